import helmet from 'helmet'
import express, {type Express} from 'express'
import type {Logger} from 'pino'
import {z} from 'zod'

import {requireClusterSecret} from '../server/http/cluster-auth.js'
import {createHttpMetrics, requestObserver} from '../server/http/observability.js'
import {notFoundHandler, problemHandler} from '../server/http/problem.js'
import {parse, requireJson} from '../server/http/validate.js'
import {httpUrl} from '../server/settings.js'
import {isLoopbackHost, isWildcard} from '../server/advertised-url.js'
import {ValidationError} from '../server/services/errors.js'
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
/** `?avoid=URL`, repeatable: servers the client just failed on. A few are plenty; a URL is at most a browser's 2 KiB. */
const MAX_AVOID = 8
const assignQuery = z.object({
  avoid: z
    .union([z.string().max(2048), z.array(z.string().max(2048)).max(MAX_AVOID)])
    .optional()
    .transform((value) => (value === undefined ? [] : [value].flat().map((url) => url.replace(/\/+$/, '')))),
})

/**
 * A URL the superserver would hand to clients and peers that cannot reach it:
 * a wildcard address never, a loopback one only from this machine. Refused at
 * registration, so a missing --url shows up at once instead of as clients
 * that cannot connect (docs/operations.md, "Each process on its own host").
 */
function unreachableReason(url: string, peerAddress: string | undefined): string | undefined {
  const host = new URL(url).hostname
  if (isWildcard(host)) return `${url} is a wildcard address that no client can dial; start the server with --url (FASTCHAT_PUBLIC_URL).`
  if (isLoopbackHost(host) && !(peerAddress && isLoopbackHost(peerAddress))) {
    return `${url} is a loopback address, but the server registering it connects from ${peerAddress ?? 'another machine'}: clients and peers elsewhere could not reach it. Start it with --url (FASTCHAT_PUBLIC_URL) naming an address they can reach.`
  }
  return undefined
}

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

  // GET /v1/assign?avoid=URL — public: it is how clients find a server (avoid: where they just failed)
  app.get('/v1/assign', async (req, res) => {
    const {avoid} = parse(assignQuery, req.query, 'query')
    res.set('Cache-Control', 'no-store').json({server: await registry.assign(avoid)})
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
    const unreachable = unreachableReason(url, req.socket.remoteAddress)
    if (unreachable) throw new ValidationError(unreachable, [{path: 'url', message: 'not reachable by clients and peers'}])
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
