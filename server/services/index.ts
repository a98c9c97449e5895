import type {DataSource} from 'typeorm'

import {BlobRepository} from '../../storage/repositories/blob.repository.js'
import {BlockRepository} from '../../storage/repositories/block.repository.js'
import {GroupRepository} from '../../storage/repositories/group.repository.js'
import {EventRepository, MessageRepository} from '../../storage/repositories/message.repository.js'
import {SessionRepository} from '../../storage/repositories/session.repository.js'
import {UserRepository} from '../../storage/repositories/user.repository.js'
import type {DeliveryHub} from '../delivery/hub.js'
import {AccountService} from './accounts.js'
import {BlockService} from './blocks.js'
import {EventService} from './events.js'
import {GroupService} from './groups.js'
import {MessageService} from './messages.js'
import {PasswordHasher, SCRYPT_COST} from './passwords.js'

export interface Services {
  accounts: AccountService
  messages: MessageService
  groups: GroupService
  events: EventService
  blobs: BlobRepository
  blocks: BlockService
  passwords: PasswordHasher
  /** Housekeeping: drop expired sessions, events past retention and blobs no message took. */
  prune(): Promise<{sessions: number; events: number; blobs: number}>
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
  /** Most bytes of events one poll answers (at least one event). */
  pollMaxBytes?: number
  /** Event reads of one user in flight at once. */
  pollReadsPerUser?: number
}

/** Logins waiting per hashing slot: 25 × ~0.4 s, about 10 s of work, under the CLI's 15 s timeout. */
const PASSWORD_QUEUE_PER_SLOT = 25

export function createServices(db: DataSource, hub: DeliveryHub, config: ServicesConfig): Services {
  const sessions = new SessionRepository(db, {idleMs: config.sessionIdleMs})
  const passwords = new PasswordHasher({
    concurrency: config.passwordHashesAtOnce,
    maxWaiting: config.passwordHashesAtOnce * PASSWORD_QUEUE_PER_SLOT,
    cost: {...SCRYPT_COST, N: 2 ** config.passwordScryptLog2N},
  })
  const blockRepository = new BlockRepository(db)
  const eventRepository = new EventRepository(db, {maxBytes: config.pollMaxBytes})
  const blobs = new BlobRepository(db, {uploadPoolSize: config.uploadPoolSize})
  const accounts = new AccountService(new UserRepository(db), sessions, passwords, config)
  const groups = new GroupService(db, new GroupRepository(), accounts, hub, blockRepository)
  return {
    accounts,
    groups,
    blocks: new BlockService(blockRepository, accounts),
    passwords,
    messages: new MessageService(new MessageRepository(db), accounts, blobs, hub, groups),
    events: new EventService(eventRepository, hub, {readsPerUser: config.pollReadsPerUser}),
    blobs,
    async prune() {
      return {
        sessions: await sessions.deleteExpired(),
        events: await eventRepository.prune(config.retentionMs),
        blobs: await blobs.collectGarbage(config.blobGraceMs),
      }
    },
  }
}
