import {createApp, DEFAULT_APP_CONFIG} from './app.js'
import {ClusterMembership} from './cluster-membership.js'
import type {ServerConfig} from './config.js'
import {createHttpMetrics} from './http/observability.js'
import {listen} from './http/listen.js'
import {withPollFastPath} from './http/poll-fast-path.js'
import {createLogger} from './logger.js'
import {openDatabase} from '../storage/data-source.js'
import {DeliveryHub} from './delivery/hub.js'
import {Rechecker} from './delivery/recheck.js'
import {createServices} from './services/index.js'
import {PeerPush, PresenceRecorder} from './delivery/peers.js'
import {PresenceRepository} from '../storage/repositories/presence.repository.js'
import {DatabaseHealth} from './health.js'

const HOUR_MS = 3_600_000
const DAY_MS = 24 * HOUR_MS
/** Retention is counted in days; sweeping hourly keeps the overshoot small. */
const PRUNE_EVERY_MS = HOUR_MS

export interface RunningChatServer {
  url: string
  port: number
  /** The registry id, once registered. */
  readonly id: string | undefined
  /** Drains: stop accepting, answer open requests, deregister, close the database. */
  close(): Promise<void>
}

export async function startChatServer(config: ServerConfig): Promise<RunningChatServer> {
  const logger = createLogger('server', config.logLevel)
  const db = await openDatabase({url: config.databaseUrl, poolSize: config.poolSize, applicationName: 'fastchat-server'})
  const lifecycle = {draining: false}
  const metrics = createHttpMetrics('fastchat_server')
  const hub = new DeliveryHub(config.maxPollsPerUser)
  const services = createServices(db, hub, {
    sessionTtlMs: config.sessionTtlHours * HOUR_MS,
    sessionIdleMs: config.sessionIdleHours * HOUR_MS,
    passwordHashesAtOnce: config.passwordHashesAtOnce,
    passwordScryptLog2N: config.passwordScryptLog2N,
    retentionMs: config.retentionDays * DAY_MS,
    blobGraceMs: config.blobGraceHours * HOUR_MS,
    uploadPoolSize: config.uploadPoolSize,
    pollMaxBytes: config.pollMaxBytes,
    pollReadsPerUser: config.pollReadsPerUser,
  })
  const health = new DatabaseHealth(db, {timeoutMs: config.healthTimeoutMs, cacheMs: config.healthCacheMs}, logger)
  const presence = new PresenceRepository(db)
  const housekeeping = setInterval(() => {
    services.prune().catch((error: unknown) => logger.warn({err: error}, 'pruning failed'))
    presence.prune().catch((error: unknown) => logger.warn({err: error}, 'pruning presence failed'))
  }, PRUNE_EVERY_MS)
  housekeeping.unref()
  const cluster = config.clusterSecret ? {hub, secret: config.clusterSecret} : undefined
  const app = createApp({db, services, logger, lifecycle, metrics, cluster, health}, {
      ...DEFAULT_APP_CONFIG,
      blobLimitBytes: config.blobLimitBytes,
      blobTransfers: {
        quotaBytes: config.storageQuotaBytes,
        uploadsPerUser: config.uploadsPerUser,
        downloadsPerUser: config.downloadsPerUser,
        deadlines: {idleMs: config.transferIdleMs, totalMs: config.transferTimeoutMs},
      },
      trustProxy: config.trustProxy,
      rateLimits: config.rateLimits
        ? {
            loginsPerMinute: config.loginsPerMinute,
            loginFreeFailures: config.loginFreeFailures,
            loginBackoffMaxSeconds: config.loginBackoffMaxSeconds,
            loginFailuresPerIpHour: config.loginFailuresPerIpHour,
            registrationsPerHour: config.registrationsPerHour,
            sendsPer10s: config.sendsPer10s,
          }
        : undefined,
    })
  const listening = await listen(withPollFastPath(app, {accounts: services.accounts, events: services.events, lifecycle, metrics, logger}), config.port, config.host)
  const url = config.publicUrl ?? listening.url
  // Peer push: record where our pollers listen, wake peers' pollers after our commits.
  const recorder = config.peerPush && config.clusterSecret ? new PresenceRecorder(presence, url, logger) : undefined
  const peers = config.peerPush && config.clusterSecret ? new PeerPush(presence, url, config.clusterSecret, logger, metrics.registry) : undefined
  hub.presence = recorder
  hub.peers = peers
  const rechecker = config.recheckMs > 0 ? new Rechecker(db, hub, config.recheckMs, logger) : undefined
  rechecker?.start()

  const membership =
    config.superserverUrl && config.clusterSecret
      ? new ClusterMembership({
          superserverUrl: config.superserverUrl,
          clusterSecret: config.clusterSecret,
          publicUrl: url,
          logger,
          isDraining: () => lifecycle.draining,
          databaseOk: () => health.current().ok,
          stats: () => ({
            openPolls: hub.openPolls,
            listeningUsers: hub.listeningUsers,
            eventsCommittedPerSecond: hub.committed.perSecond(),
            eventsDeliveredPerSecond: hub.delivered.perSecond(),
            recheckWakeups: hub.recovered,
          }),
        })
      : undefined
  membership?.start()
  logger.info({url}, 'chat server listening')

  let closing: Promise<void> | undefined
  return {
    url,
    port: listening.port,
    get id() {
      return membership?.id
    },
    close() {
      closing ??= (async () => {
        lifecycle.draining = true
        logger.info({openPolls: hub.openPolls}, 'draining')
        clearInterval(housekeeping)
        await membership?.beatNow()
        await recorder?.stop()
        // Open polls answer now with what they have; clients re-poll elsewhere.
        hub.close()
        await listening.close(config.shutdownGraceMs)
        rechecker?.stop()
        await peers?.stop()
        await membership?.stop()
        await services.blobs.close()
        await db.destroy()
        logger.info('chat server stopped')
        logger.flush()
      })()
      return closing
    },
  }
}
