import express, {type Express} from 'express'
import helmet from 'helmet'
import type {Logger} from 'pino'
import type {DataSource} from 'typeorm'

import {UnavailableError} from './http/errors.js'
import {createHttpMetrics, type HttpMetrics, requestObserver} from './http/observability.js'
import {notFoundHandler, problemHandler} from './http/problem.js'
import {createLimiters, type RateLimits} from './http/rate-limit.js'
import {accountRoutes} from './routes/accounts.js'
import {blobRoutes} from './routes/blobs.js'
import {groupRoutes, isKeySetUpload} from './routes/groups.js'
import {messageRoutes} from './routes/messages.js'
import type {Services} from './services/index.js'
import type {DeliveryHub} from './delivery/hub.js'
import {clusterRoutes} from './routes/cluster.js'

/** What a chat server app needs from the outside; passed in, never looked up. */
export interface ChatServerDeps {
  db: DataSource
  services: Services
  logger: Logger
  /** Flipped by the process when it starts draining. */
  lifecycle: {draining: boolean}
  metrics?: HttpMetrics
  /** With a cluster secret, peers may wake this server's polls (POST /v1/cluster/wake). */
  cluster?: {hub: DeliveryHub; secret: string}
}

export interface ChatServerAppConfig {
  /** Largest JSON body any route accepts. */
  jsonLimitBytes: number
  /** Largest file accepted by POST /v1/blobs. */
  blobLimitBytes: number
  /** Per-account and per-IP limits; undefined turns them off. */
  rateLimits?: RateLimits
  /** Express's `trust proxy`: whose X-Forwarded-For to believe for client addresses. */
  trustProxy?: string | number | boolean
}

export const DEFAULT_APP_CONFIG: ChatServerAppConfig = {jsonLimitBytes: 256 * 1024, blobLimitBytes: 25 * 1024 * 1024}

export function createApp(deps: ChatServerDeps, config: ChatServerAppConfig = DEFAULT_APP_CONFIG): Express {
  const {logger, lifecycle} = deps
  const metrics = deps.metrics ?? createHttpMetrics('fastchat_server')
  const app = express()
  app.disable('x-powered-by')
  app.set('etag', false)
  app.set('trust proxy', config.trustProxy ?? false)
  app.use(helmet())
  const limiters = createLimiters(config.rateLimits)
  app.use(requestObserver(logger, metrics))

  // GET /healthz — 503 while draining, so load balancers stop sending traffic.
  app.get('/healthz', (_req, res) => {
    res.status(lifecycle.draining ? 503 : 200).json({status: lifecycle.draining ? 'draining' : 'ok'})
  })

  // GET /metrics
  app.get('/metrics', async (_req, res) => {
    res.type(metrics.registry.contentType).send(await metrics.registry.metrics())
  })

  // A draining server turns new work away; the client asks the superserver for another.
  app.use((_req, res, next) => {
    if (!lifecycle.draining) return next()
    res.set('Connection', 'close')
    next(new UnavailableError('FC_DRAINING', 'This server is shutting down; ask the superserver for another one.', 0))
  })

  const json = express.json({limit: config.jsonLimitBytes})
  // Key sets are parsed by their own route, with its own limit.
  app.use((req, res, next) => (isKeySetUpload(req.method, req.path) ? next() : json(req, res, next)))
  if (deps.cluster) app.use(clusterRoutes(deps.cluster.hub, deps.cluster.secret))
  app.use(accountRoutes(deps.services.accounts, limiters))
  app.use(messageRoutes(deps.services.accounts, deps.services.messages, deps.services.events, limiters))
  app.use(groupRoutes(deps.services.accounts, deps.services.groups, limiters))
  app.use(blobRoutes(deps.services.accounts, deps.services.blobs, config.blobLimitBytes, limiters))

  app.use(notFoundHandler())
  app.use(problemHandler(logger))
  return app
}
