import helmet from 'helmet'
import express, {type Express} from 'express'
import type {Logger} from 'pino'
import {z} from 'zod'

import {requireClusterSecret} from '../server/http/cluster-auth.js'
import {createHttpMetrics, requestObserver} from '../server/http/observability.js'
import {notFoundHandler, problemHandler} from '../server/http/problem.js'
import {parse, requireJson} from '../server/http/validate.js'
import {httpUrl} from '../server/settings.js'
import type {RegistryService} from './registry.js'

export interface SuperserverDeps {
  registry: RegistryService
  logger: Logger
}

export interface SuperserverAppConfig {
  clusterSecret: string
}

/** Registration bodies are tiny; anything bigger is not a chat server talking. */
const BODY_LIMIT = '16kb'

const registerBody = z.strictObject({url: httpUrl})
const count = z.number().int().min(0)
/** The heartbeat figures least-loaded balancing adds up (superserver/registry.ts). */
const LOAD_STATS = ['openPolls', 'openStreams'] as const
const heartbeatBody = z.strictObject({
  draining: z.boolean().default(false),
  /** A server whose database does not answer says so, and is not assigned until it says "ok" again. */
  database: z.enum(['ok', 'unavailable']).default('ok'),
  /** Free-form figures for operators; the two that least-loaded balancing reads are checked (a missing openStreams counts as 0). */
  stats: z
    .record(z.string().max(64), z.union([z.number(), z.string().max(256), z.boolean()]))
    .superRefine((stats, context) => {
      for (const name of LOAD_STATS) {
        if (name in stats && !count.safeParse(stats[name]).success) context.addIssue({code: 'custom', path: [name], message: 'must be a whole number, 0 or more'})
      }
    })
    .default({}),
})
const serverId = z.uuid()

export function createSuperserverApp(deps: SuperserverDeps, config: SuperserverAppConfig): Express {
  const {registry, logger} = deps
  const metrics = createHttpMetrics('fastchat_superserver')
  const app = express()
  app.disable('x-powered-by')
  app.set('etag', false)
  app.use(helmet())
  app.use(requestObserver(logger, metrics))
  app.use(express.json({limit: BODY_LIMIT}))

  // GET /healthz
  app.get('/healthz', (_req, res) => {
    res.json({status: 'ok'})
  })

  // The registry's view of the cluster (server URLs, load) and the metrics are for its operators: the cluster secret.
  const clusterOnly = requireClusterSecret(config.clusterSecret)

  // GET /metrics
  app.get('/metrics', clusterOnly, async (_req, res) => {
    res.type(metrics.registry.contentType).send(await metrics.registry.metrics())
  })

  // GET /v1/assign — public: it is how clients find a server
  app.get('/v1/assign', async (_req, res) => {
    res.set('Cache-Control', 'no-store').json({server: await registry.assign()})
  })

  // GET /v1/servers
  app.get('/v1/servers', clusterOnly, async (_req, res) => {
    const servers = await registry.list()
    res.set('Cache-Control', 'no-store').json({
      strategy: registry.strategy,
      servers: servers.map((s) => ({
        id: s.id,
        url: s.url,
        healthy: s.healthy,
        draining: s.draining,
        databaseOk: s.databaseOk,
        lastSeen: s.lastSeen.toISOString(),
        registeredAt: s.registeredAt.toISOString(),
        ...s.stats,
        assignedSinceBeat: s.assignedSinceBeat,
      })),
    })
  })

  const cluster = express.Router()
  cluster.use(clusterOnly)

  // POST /v1/servers
  cluster.post('/', requireJson(), async (req, res) => {
    const {url} = parse(registerBody, req.body)
    const registered = await registry.register(url)
    res.status(201).json(registered)
  })

  // PUT /v1/servers/:id/heartbeat
  cluster.put('/:id/heartbeat', requireJson(), async (req, res) => {
    const id = parse(serverId, req.params.id, 'server id')
    const {draining, database, stats} = parse(heartbeatBody, req.body)
    await registry.heartbeat(id, draining, stats, database === 'ok')
    res.status(204).end()
  })

  // DELETE /v1/servers/:id
  cluster.delete('/:id', async (req, res) => {
    await registry.deregister(parse(serverId, req.params.id, 'server id'))
    res.status(204).end()
  })

  app.use('/v1/servers', cluster)
  app.use(notFoundHandler())
  app.use(problemHandler(logger))
  return app
}
