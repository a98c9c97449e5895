import express, {type Express, type RequestHandler} from 'express'
import {Counter, Gauge, type Registry} from 'prom-client'
import type {Logger} from 'pino'
import type {DataSource} from 'typeorm'

import {createHttpMetrics, type HttpMetrics, requestObserver} from './http/observability.js'
import {notFoundHandler, problemHandler} from './http/problem.js'
import {createLimiters, type RateLimits} from './http/rate-limit.js'
import {withSecurityHeaders} from './http/security-headers.js'
import {accountRoutes} from './routes/accounts.js'
import {blobRoutes, type BlobRouteConfig} from './routes/blobs.js'
import {groupRoutes, isKeySetUpload} from './routes/groups.js'
import {messageRoutes} from './routes/messages.js'
import type {Services} from './services/index.js'
import type {Delivery} from './delivery/delivery.js'
import {clusterRoutes} from './routes/cluster.js'
import type {EventAppender} from './services/receipts.js'
import {blockRoutes} from './routes/blocks.js'
import {deviceRoutes} from './routes/devices.js'
import {presenceRoutes} from './routes/presence.js'
import {peerRoutes} from './routes/peers.js'
import {receiptRoutes} from './routes/receipts.js'
import {requireClusterSecret} from './http/cluster-auth.js'
import {UnauthorizedError, UnavailableError} from './services/errors.js'
import type {DatabaseHealth} from './health.js'

/** What a chat server app needs from the outside; passed in, never looked up. */
export interface ChatServerDeps {
  db: DataSource
  services: Services
  logger: Logger
  /** Flipped by the process when it starts draining. */
  lifecycle: {draining: boolean}
  metrics?: HttpMetrics
  /** The polls and streams of GET /v1/events, and what commits hand them. */
  delivery: Delivery
  /**
   * With a cluster secret, peers may hand this server's listeners their commits (POST /v1/cluster/wake),
   * and receipts' events for them to append here (POST /v1/cluster/events, through `appender`: the ReceiptGatherer).
   */
  cluster?: {secret: string; appender: EventAppender}
  /** Whether the database answers, for /healthz; without it /healthz only reports draining. */
  health?: DatabaseHealth
}

export interface ChatServerAppConfig {
  /** Largest JSON body any route accepts. */
  jsonLimitBytes: number
  /** Largest file accepted by POST /v1/blobs. */
  blobLimitBytes: number
  /** Storage quota, per-user transfer caps and transfer deadlines of the blob routes. */
  blobTransfers: Omit<BlobRouteConfig, 'limitBytes'>
  /** Per-account and per-IP limits; undefined turns them off. */
  rateLimits?: RateLimits
  /** Express's `trust proxy`: whose X-Forwarded-For to believe for client addresses. */
  trustProxy?: string | number | boolean
}

const noClusterSecret: RequestHandler = (_req, _res, next) =>
  next(new UnauthorizedError('/metrics needs the cluster secret, and this server has none (set FASTCHAT_CLUSTER_SECRET).'))

/** How busy password hashing is (scrypt, the costliest thing a login does), read when scraped. */
function passwordMetrics(registry: Registry, stats: () => {running: number; waiting: number; hashes: number} | undefined): void {
  new Counter({
    name: 'fastchat_server_password_hashes_total',
    help: 'Password hashes computed (scrypt, 128 MiB and ~0.4 s each): registrations, logins, rehashes',
    registers: [registry],
    collect() {
      this.reset()
      this.inc(stats()?.hashes ?? 0)
    },
  })
  new Gauge({
    name: 'fastchat_server_password_hashes_waiting',
    help: 'Logins and registrations waiting for a hashing slot (FASTCHAT_PASSWORD_HASHES_AT_ONCE)',
    registers: [registry],
    collect() {
      this.set(stats()?.waiting ?? 0)
    },
  })
}

export const DEFAULT_APP_CONFIG: ChatServerAppConfig = {
  jsonLimitBytes: 256 * 1024,
  blobLimitBytes: 25 * 1024 * 1024,
  blobTransfers: {quotaBytes: 1024 ** 3, uploadsPerUser: 2, downloadsPerUser: 4, deadlines: {idleMs: 30_000, totalMs: 300_000}},
}

export function createApp(deps: ChatServerDeps, config: ChatServerAppConfig = DEFAULT_APP_CONFIG): Express {
  const {logger, lifecycle} = deps
  const metrics = deps.metrics ?? createHttpMetrics('fastchat_server')
  const app = express()
  app.disable('x-powered-by')
  app.set('etag', false)
  app.set('trust proxy', config.trustProxy ?? false)
  app.use(withSecurityHeaders())
  const limiters = createLimiters(config.rateLimits)
  app.use(requestObserver(logger, metrics))

  // GET /healthz — 503 while draining or while the database does not answer, so load balancers stop sending traffic.
  app.get('/healthz', async (_req, res) => {
    res.set('Cache-Control', 'no-store')
    if (lifecycle.draining) return void res.status(503).json({status: 'draining'})
    const database = (await deps.health?.check()) ?? {ok: true}
    if (database.ok) return void res.status(200).json({status: 'ok'})
    res.status(503).json({status: 'unavailable', database: 'unavailable', reason: database.reason})
  })

  // GET /metrics — for the cluster's operators only (the cluster secret): it tells load, users and timings.
  const metricsGuard = deps.cluster ? requireClusterSecret(deps.cluster.secret) : noClusterSecret
  passwordMetrics(metrics.registry, () => deps.services.passwords?.stats())
  app.get('/metrics', metricsGuard, async (_req, res) => {
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
  if (deps.cluster) app.use(clusterRoutes(deps.delivery, deps.cluster.secret, deps.cluster.appender))
  // Messages first: the routes clients call most are matched first.
  app.use(messageRoutes(deps.services.accounts, deps.services.messages, {delivery: deps.delivery, logger}, limiters))
  app.use(accountRoutes(deps.services.accounts, limiters))
  app.use(blockRoutes(deps.services.accounts, deps.services.blocks, limiters))
  app.use(presenceRoutes(deps.services.accounts, deps.services.presence, limiters))
  app.use(groupRoutes(deps.services.accounts, deps.services.groups, limiters))
  app.use(receiptRoutes(deps.services.accounts, deps.services.receipts, limiters))
  app.use(peerRoutes(deps.services.accounts, deps.services.receipts, limiters))
  app.use(blobRoutes(deps.services.accounts, deps.services.blobs, {limitBytes: config.blobLimitBytes, ...config.blobTransfers}, limiters))
  app.use(deviceRoutes(deps.services.accounts, deps.services.devices, limiters))

  app.use(notFoundHandler())
  app.use(problemHandler(logger))
  return app
}
