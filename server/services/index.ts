import type {DataSource} from 'typeorm'

import {EventRepository, MessageRepository} from '../../storage/repositories/message.repository.js'
import {SessionRepository} from '../../storage/repositories/session.repository.js'
import {UserRepository} from '../../storage/repositories/user.repository.js'
import type {DeliveryHub} from '../delivery/hub.js'
import {AccountService} from './accounts.js'
import {EventService} from './events.js'
import {MessageService} from './messages.js'

export interface Services {
  accounts: AccountService
  messages: MessageService
  events: EventService
  /** Housekeeping: drop expired sessions and events past retention. */
  prune(): Promise<{sessions: number; events: number}>
}

export function createServices(db: DataSource, hub: DeliveryHub, config: {sessionTtlMs: number; retentionMs: number}): Services {
  const sessions = new SessionRepository(db)
  const eventRepository = new EventRepository(db)
  const accounts = new AccountService(new UserRepository(db), sessions, config)
  return {
    accounts,
    messages: new MessageService(new MessageRepository(db), accounts, hub),
    events: new EventService(eventRepository, hub),
    async prune() {
      return {sessions: await sessions.deleteExpired(), events: await eventRepository.prune(config.retentionMs)}
    },
  }
}
