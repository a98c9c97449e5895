import {Counter, Gauge, type Registry} from 'prom-client'

import {createApp, DEFAULT_APP_CONFIG} from './app.js'
import {ClusterMembership} from './cluster-membership.js'
import type {ServerConfig} from './config.js'
import {createHttpMetrics} from './http/observability.js'
import {listen} from './http/listen.js'
import {withEventsFastPath} from './http/events.js'
import {createLogger} from './logger.js'
import {openDatabase} from '../storage/data-source.js'
import {Delivery} from './delivery/delivery.js'
import {EventStreamRepository} from '../storage/repositories/event-stream.repository.js'
import {createDirectWrites, createServices} from './services/index.js'
import {PeerPush, PresenceRecorder} from './delivery/peers.js'
import {PresenceRepository} from '../storage/repositories/presence.repository.js'
import {DatabaseHealth} from './health.js'
import {ACK_FLUSH_MS_MAX, AckRecorder} from './delivery/acks.js'
import {ReceiptRepository} from '../storage/repositories/receipt.repository.js'
import {HomeAppender} from './delivery/home-appender.js'
import {ReceiptGatherer} from './delivery/receipt-gatherer.js'
import {advertisedUrl} from './advertised-url.js'
import {databaseTimeouts} from './settings.js'

/** What delivery did, read when scraped: answers from memory against reads of the stream, re-check wake-ups. */
function deliveryMetrics(registry: Registry, delivery: Delivery): void {
  new Counter({
    name: 'fastchat_server_listener_answers_total',
    help: 'Poll answers and stream writes, by source: memory (the events a commit handed over) or stream (read from PostgreSQL)',
    labelNames: ['source'] as const,
    registers: [registry],
    collect() {
      this.reset()
      this.inc({source: 'memory'}, delivery.answers.fromMemory)
      this.inc({source: 'stream'}, delivery.answers.fromStream)
    },
  })
  new Counter({
    name: 'fastchat_server_listener_reads_total',
    help: 'Reads of the stream for polls and streams, by reason: start (a poll or stream that could not skip its first read), woken (news not handed over), recheck (the re-check found news), overflow (more was handed over than a listener keeps), gap (an event handed over without its predecessor), more (the last read was a full page)',
    labelNames: ['reason'] as const,
    registers: [registry],
    collect() {
      this.reset()
      for (const [reason, count] of Object.entries(delivery.readsBy)) this.inc({reason}, count)
    },
  })
  new Counter({
    name: 'fastchat_server_listener_gap_reads_total',
    help: 'Reads made because an event handed over from memory came without its predecessor within the grace (a lost or late push)',
    registers: [registry],
    collect() {
      this.reset()
      this.inc(delivery.gapReads)
    },
  })
  new Gauge({
    name: 'fastchat_server_open_listeners',
    help: 'Open long-polls and event streams on this server',
    labelNames: ['kind'] as const,
    registers: [registry],
    collect() {
      this.set({kind: 'poll'}, delivery.openPolls)
      this.set({kind: 'stream'}, delivery.openStreams)
    },
  })
}

const HOUR_MS = 3_600_000
const DAY_MS = 24 * HOUR_MS
/** Retention is counted in days; sweeping hourly keeps the overshoot small. */
const PRUNE_EVERY_MS = HOUR_MS
/** Presence sweeps per offline delay: an offline user is announced within a quarter of the delay after it ran out. */
const PRESENCE_SWEEPS_PER_DELAY = 4
/** Never sweep more often than this, whatever the delay. */
const PRESENCE_SWEEP_MIN_MS = 250

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
  const db = await openDatabase({
    url: config.databaseUrl,
    poolSize: config.poolSize,
    applicationName: 'fastchat-server',
    timeouts: databaseTimeouts(config),
  })
  const lifecycle = {draining: false}
  const metrics = createHttpMetrics('fastchat_server')
  // Bound first: peers and the registry learn this server by its URL, which needs the port.
  const listening = await listen(undefined, config.port, config.host)
  let url: string
  try {
    url = await advertisedUrl({port: listening.port, host: config.host, publicUrl: config.publicUrl, superserverUrl: config.superserverUrl})
  } catch (error) {
    await listening.close(0)
    await db.destroy()
    throw error
  }
  const presence = new PresenceRepository(db)
  const peerPush = config.peerPush && config.clusterSecret
  const stream = new EventStreamRepository(db, {maxBytes: config.pollMaxBytes})
  // 1:1 sends, and what rides along in their statements (receipts' events, peer offers).
  const directWrites = createDirectWrites(db, metrics.registry)
  // Where our listeners are, always: `fastchat who` reads it (and its online events start here); with
  // peer push, peers read it too, and we hand our commits to the peers holding theirs.
  const presenceRecorder = new PresenceRecorder(presence, url, logger, {
    refreshMs: Math.floor(config.presenceOfflineMs / 3),
    onOnline: (ids) => void services.presence.cameOnline(ids).catch((error: unknown) => logger.warn({err: error}, 'could not announce presence')),
  })
  const peers = peerPush
    ? new PeerPush(presence, url, {secret: config.clusterSecret!, timeoutMs: config.peerTimeoutMs, appendWaitMs: config.receiptFlushMs}, logger, metrics.registry)
    : undefined
  // Receipts' events: gathered per recipient and window by the server their recipient listens on (if it is a
  // peer, it is handed them), appended riding along with the sends, delivered as they commit
  // (./delivery/receipt-gatherer.ts, ./delivery/home-appender.ts).
  const receiptGatherer = new ReceiptGatherer(directWrites, (events) => delivery.deliverEvents(events), config.receiptFlushMs)
  const receiptEvents = new HomeAppender(receiptGatherer, peers, (id) => presenceRecorder.isHere(id), metrics.registry)
  // Delivered receipts: what polls acknowledge, written every receiptFlushMs (at most a second, so that one to a
  // quiet sender, which the gatherer passes at once, waits no longer than before); the senders woken through delivery.
  const acks = config.deliveryReceipts
    ? new AckRecorder(new ReceiptRepository(db, receiptEvents), logger, Math.min(config.receiptFlushMs, ACK_FLUSH_MS_MAX))
    : undefined
  const delivery = new Delivery(
    {
      stream,
      logger,
      presence: presenceRecorder,
      peers,
      acks,
    },
    {
      maxPerUser: config.maxPollsPerUser,
      readsPerUser: config.pollReadsPerUser,
      maxBytes: config.pollMaxBytes,
      heartbeatMs: config.streamHeartbeatMs,
      recheckMs: config.recheckMs,
      lazyEventsMs: config.lazyEventsMs,
      mailboxMs: config.mailboxMs,
    },
  )
  const services = createServices(db, {delivery, stream, directWrites, receiptEvents}, {
    sessionTtlMs: config.sessionTtlHours * HOUR_MS,
    sessionIdleMs: config.sessionIdleHours * HOUR_MS,
    passwordHashesAtOnce: config.passwordHashesAtOnce,
    passwordScryptLog2N: config.passwordScryptLog2N,
    retentionMs: config.retentionDays * DAY_MS,
    blobGraceMs: config.blobGraceHours * HOUR_MS,
    uploadPoolSize: config.uploadPoolSize,
    registry: metrics.registry,
    deviceLinkTtlMs: config.deviceLinkTtlMs,
    presenceOfflineMs: config.presenceOfflineMs,
    receiptFlushMs: config.receiptFlushMs,
  })
  services.accounts.start()
  const health = new DatabaseHealth(db, {timeoutMs: config.healthTimeoutMs, cacheMs: config.healthCacheMs}, logger)
  const housekeeping = setInterval(() => {
    services.prune().catch((error: unknown) => logger.warn({err: error}, 'pruning failed'))
    presence.prune().catch((error: unknown) => logger.warn({err: error}, 'pruning presence failed'))
  }, PRUNE_EVERY_MS)
  housekeeping.unref()
  // Presence: users whose last poll is older than the offline delay are announced offline. Every server
  // sweeps (one indexed query over the users online now); a conditional UPDATE makes one of them announce each.
  let sweeping = false
  const presenceSweep = setInterval(() => {
    if (sweeping) return
    sweeping = true
    services.presence
      .sweep()
      .catch((error: unknown) => logger.warn({err: error}, 'presence sweep failed'))
      .finally(() => (sweeping = false))
  }, Math.max(PRESENCE_SWEEP_MIN_MS, Math.floor(config.presenceOfflineMs / PRESENCE_SWEEPS_PER_DELAY)))
  presenceSweep.unref()
  const cluster = config.clusterSecret ? {secret: config.clusterSecret, appender: receiptGatherer} : undefined
  const app = createApp({db, services, delivery, logger, lifecycle, metrics, cluster, health}, {
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
  deliveryMetrics(metrics.registry, delivery)
  listening.serve(withEventsFastPath(app, {accounts: services.accounts, delivery, lifecycle, metrics, logger}))
  delivery.start()

  const membership =
    config.superserverUrl && config.clusterSecret
      ? new ClusterMembership({
          superserverUrl: config.superserverUrl,
          clusterSecret: config.clusterSecret,
          publicUrl: url,
          timeoutMs: config.registryTimeoutMs,
          logger,
          isDraining: () => lifecycle.draining,
          // Checked afresh for every heartbeat (one SELECT 1, bounded by FASTCHAT_HEALTH_TIMEOUT_MS): what the superserver
          // hears is never older than the beat, so a server cut from its database stops getting clients at the next one.
          databaseOk: async () => (await health.check(0)).ok,
          stats: () => ({
            openPolls: delivery.openPolls,
            openStreams: delivery.openStreams,
            listeningUsers: delivery.listeningUsers,
            eventsCommittedPerSecond: delivery.committed.perSecond(),
            eventsDeliveredPerSecond: delivery.delivered.perSecond(),
            recheckWakeups: delivery.recovered,
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
        logger.info({openPolls: delivery.openPolls, openStreams: delivery.openStreams}, 'draining')
        clearInterval(housekeeping)
        clearInterval(presenceSweep)
        await membership?.beatNow()
        // Open polls answer now with what they have, streams end; clients resume elsewhere.
        await delivery.drain()
        // Receipts held for their window go now (and whatever still comes, at once), so the requests waiting for them are answered.
        await receiptGatherer.drain()
        await services.receipts.drain()
        await listening.close(config.shutdownGraceMs)
        await delivery.stop()
        await membership?.stop()
        services.accounts.stop()
        await services.blobs.close()
        await db.destroy()
        logger.info('chat server stopped')
        logger.flush()
      })()
      return closing
    },
  }
}
