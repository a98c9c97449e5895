import type {DataSource} from 'typeorm'

import {BlobRepository} from '../../storage/repositories/blob.repository.js'
import {GroupRepository} from '../../storage/repositories/group.repository.js'
import {EventRepository, MessageRepository} from '../../storage/repositories/message.repository.js'
import {SessionRepository} from '../../storage/repositories/session.repository.js'
import {UserRepository} from '../../storage/repositories/user.repository.js'
import type {DeliveryHub} from '../delivery/hub.js'
import {AccountService} from './accounts.js'
import {EventService} from './events.js'
import {GroupService} from './groups.js'
import {MessageService} from './messages.js'

export interface Services {
  accounts: AccountService
  messages: MessageService
  groups: GroupService
  events: EventService
  blobs: BlobRepository
  /** Housekeeping: drop expired sessions, events past retention and blobs no message took. */
  prune(): Promise<{sessions: number; events: number; blobs: number}>
}

export interface ServicesConfig {
  sessionTtlMs: number
  retentionMs: number
  blobGraceMs: number
}

export function createServices(db: DataSource, hub: DeliveryHub, config: ServicesConfig): Services {
  const sessions = new SessionRepository(db)
  const eventRepository = new EventRepository(db)
  const blobs = new BlobRepository(db)
  const accounts = new AccountService(new UserRepository(db), sessions, config)
  const groups = new GroupService(db, new GroupRepository(), accounts, hub)
  return {
    accounts,
    groups,
    messages: new MessageService(new MessageRepository(db), accounts, blobs, hub, groups),
    events: new EventService(eventRepository, hub),
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
