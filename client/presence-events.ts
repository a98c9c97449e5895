import type {ServerEvent} from './api-client.js'
import type {PresenceEvent} from '../protocol/presence.js'

/**
 * Presence events in the event stream (docs/api.md "Presence"): someone you
 * talk with came online or went offline. Handed out as data (`listen --json`
 * prints them, `listen --verbose` one line each); nothing is printed for them
 * by default, and nothing answers them.
 */
export interface PresenceNotice {
  type: 'presence'
  /** The id this event is deduplicated by (events have no id of their own). */
  id: string
  seq: number
  /** Whose presence changed. */
  user: string
  presence: 'online' | 'offline'
  /** When their last poll was recorded; null if not known. */
  lastSeen: string | null
  /** When the change was announced. */
  at: string | null
}

/** Every `presence` event the API client passed has been checked against its schema (protocol/presence.ts). */
export const isPresenceEvent = (event: ServerEvent): event is PresenceEvent => event.type === 'presence'

export function presenceNotice(event: PresenceEvent): PresenceNotice {
  return {
    type: 'presence',
    id: `presence:${event.user}:${event.seq}`,
    seq: event.seq,
    user: event.user,
    presence: event.presence,
    lastSeen: event.lastSeen ?? null,
    at: event.at ?? null,
  }
}
