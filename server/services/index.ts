import {Histogram, type Registry} from 'prom-client'
import type {DataSource} from 'typeorm'

import {BlobRepository} from '../../storage/repositories/blob.repository.js'
import {BlockRepository} from '../../storage/repositories/block.repository.js'
import {GroupRepository} from '../../storage/repositories/group.repository.js'
import {EventStreamRepository} from '../../storage/repositories/event-stream.repository.js'
import {MessageRepository} from '../../storage/repositories/message.repository.js'
import {SessionRepository} from '../../storage/repositories/session.repository.js'
import {UserRepository} from '../../storage/repositories/user.repository.js'
import {AccountService} from './accounts.js'
import {BlockService} from './blocks.js'
import {DeviceLinkRepository} from '../../storage/repositories/device-link.repository.js'
import {DEVICE_LINK_TTL_MS, DeviceService} from './devices.js'
import {GroupService} from './groups.js'
import {type Commits, MessageService} from './messages.js'
import {PasswordHasher, SCRYPT_COST} from './passwords.js'
import {PresenceRepository} from '../../storage/repositories/presence.repository.js'
import {PresenceVisibilityRepository} from '../../storage/repositories/presence-visibility.repository.js'
import {PresenceService} from './presence.js'
import {type EventCommits, ReadReceiptBatcher, ReceiptService} from './receipts.js'
import type {ReceiptPublisher} from '../../storage/repositories/receipt.repository.js'
import {RECEIPT_FLUSH_MS_DEFAULT} from '../delivery/acks.js'

export interface Services {
  accounts: AccountService
  messages: MessageService
  groups: GroupService
  blobs: BlobRepository
  blocks: BlockService
  devices: DeviceService
  passwords: PasswordHasher
  /** Who is online, for the people one talks with (`fastchat who`), and its events. */
  presence: PresenceService
  /** Read receipts and peer offers relayed (POST /v1/receipts, /v1/peer-offers). */
  receipts: ReceiptService
  /** Housekeeping: drop expired sessions, events past retention and blobs no message took. */
  prune(): Promise<{sessions: number; events: number; blobs: number; deviceLinks: number}>
}

export interface ServicesConfig {
  sessionTtlMs: number
  sessionIdleMs: number
  /** Password hashes computed at once (each holds 128 MiB). */
  passwordHashesAtOnce: number
  passwordScryptLog2N: number
  retentionMs: number
  blobGraceMs: number
  /** Connections set apart for uploads (BlobRepository.store). */
  uploadPoolSize?: number
  /** Where to register the services' metrics (the server's /metrics), if anywhere. */
  registry?: Registry
  /** How long a device link waits for its approval (DEVICE_LINK_TTL_MS by default). */
  deviceLinkTtlMs?: number
  /** FASTCHAT_PRESENCE_OFFLINE_MS: how long after their last recorded poll a user is announced offline. */
  presenceOfflineMs?: number
  /** FASTCHAT_RECEIPT_FLUSH_MS: the receipts' window (ReceiptGatherer); read receipts wait at most that (or 100 ms) where they were posted (ReadReceiptBatcher). */
  receiptFlushMs?: number
}

/** How many 1:1 sends each commit carried (MessageRepository.storeDirect batches them). */
function sendBatchMetric(registry: Registry | undefined): ((sends: number) => void) | undefined {
  if (!registry) return undefined
  const histogram = new Histogram({
    name: 'fastchat_server_send_batch_sends',
    help: '1:1 sends committed together in one statement (those that arrived while earlier ones ran)',
    buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256],
    registers: [registry],
  })
  return (sends) => histogram.observe(sends)
}

/**
 * The 1:1 sends' batched writer (MessageRepository), and what rides along in
 * its statements: read receipts, peer offers and the delivered receipts'
 * events (ReceiptRepository). Made before the services: delivery's
 * acknowledgements write through it too.
 */
export function createDirectWrites(db: DataSource, registry?: Registry): MessageRepository {
  return new MessageRepository(db, {onBatch: sendBatchMetric(registry)})
}

/** Logins waiting per hashing slot: 25 × ~0.4 s, about 10 s of work, under the CLI's 15 s timeout. */
const PASSWORD_QUEUE_PER_SLOT = 25

/**
 * The services of one chat server. `delivery` hears of every commit (server/delivery/);
 * `stream` is the event stream's repository, shared with delivery, which reads it;
 * `directWrites` the 1:1 sends' writer (createDirectWrites); `receiptEvents` where
 * read receipts' events are appended (HomeAppender: by their recipient's server).
 */
export function createServices(
  db: DataSource,
  parts: {delivery: Commits & EventCommits; stream: EventStreamRepository; directWrites: MessageRepository; receiptEvents: ReceiptPublisher},
  config: ServicesConfig,
): Services {
  const delivery = parts.delivery
  const sessions = new SessionRepository(db, {idleMs: config.sessionIdleMs})
  const passwords = new PasswordHasher({
    concurrency: config.passwordHashesAtOnce,
    maxWaiting: config.passwordHashesAtOnce * PASSWORD_QUEUE_PER_SLOT,
    cost: {...SCRYPT_COST, N: 2 ** config.passwordScryptLog2N},
  })
  const blockRepository = new BlockRepository(db)
  const eventRepository = parts.stream
  const blobs = new BlobRepository(db, {uploadPoolSize: config.uploadPoolSize})
  const directWrites = parts.directWrites
  const accounts = new AccountService(new UserRepository(db), sessions, passwords, config)
  const groups = new GroupService(db, new GroupRepository(), accounts, delivery, blockRepository, eventRepository)
  const devices = new DeviceService(accounts, sessions, new DeviceLinkRepository(db), {
    linkTtlMs: config.deviceLinkTtlMs ?? DEVICE_LINK_TTL_MS,
    sessionTtlMs: config.sessionTtlMs,
  })
  return {
    accounts,
    groups,
    blocks: new BlockService(blockRepository, accounts, groups),
    devices,
    passwords,
    messages: new MessageService(directWrites, accounts, blobs, delivery, groups, eventRepository, (work) => db.transaction(work)),
    blobs,
    presence: new PresenceService(db, new PresenceRepository(db), new PresenceVisibilityRepository(db), eventRepository, delivery, {offlineMs: config.presenceOfflineMs}),
    receipts: new ReceiptService(
      directWrites,
      accounts,
      parts.delivery,
      new ReadReceiptBatcher(parts.receiptEvents, blockRepository, config.receiptFlushMs ?? RECEIPT_FLUSH_MS_DEFAULT),
    ),
    async prune() {
      return {
        sessions: await sessions.deleteExpired(),
        events: await eventRepository.prune(config.retentionMs),
        blobs: await blobs.collectGarbage(config.blobGraceMs),
        deviceLinks: await devices.prune(),
      }
    },
  }
}
