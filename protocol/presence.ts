import {z} from 'zod'

import {isoTime, seq, username} from './primitives.js'

/**
 * Presence (docs/api.md "Presence"): who of the people you talk with is
 * online, or when they were last seen, as far as the chat servers know from
 * their polls and streams. Shared by the server (validation) and the client
 * (checking answers).
 */

/** Most names one `GET /v1/presence` asks about. */
export const PRESENCE_QUERY_MAX_USERS = 200

/**
 * What a person's presence is to the one asking: `online` (a poll or stream
 * of theirs is open, or was within the offline delay), `offline` (with
 * `lastSeen`, or without when never seen since they last showed it),
 * `hidden` (they turned presence off) or `unknown` (no such user, or not
 * someone whose presence you may see).
 */
export const presenceState = z.enum(['online', 'offline', 'hidden', 'unknown'])

// GET /v1/presence?users=alice,bob (comma-separated, 1-200 names, duplicates counted once)
export const presenceQuery = z.strictObject({
  users: z
    .string()
    .max(PRESENCE_QUERY_MAX_USERS * 33)
    .transform((list) => list.split(','))
    .pipe(z.array(username).min(1).max(PRESENCE_QUERY_MAX_USERS, `must name at most ${PRESENCE_QUERY_MAX_USERS} users`)),
})

// PUT /v1/me/presence
export const presenceSetting = z.strictObject({visible: z.boolean()})

/** One person's presence, as `GET /v1/presence` answers it (`lastSeen` only with online or offline). */
export const presenceEntry = z.object({username, presence: presenceState, lastSeen: isoTime.nullable().optional()})

// GET /v1/presence → 200, in the order asked
export const presenceList = z.object({users: z.array(presenceEntry).max(PRESENCE_QUERY_MAX_USERS)})

// GET and PUT /v1/me/presence → 200: your setting, and what your contacts see
export const myPresence = z.object({visible: z.boolean(), presence: presenceState, lastSeen: isoTime.nullable().optional()})

/** The `presence` event (GET /v1/events): a person you talk with came online or went offline. */
export const presenceEvent = z.object({
  seq,
  type: z.literal('presence'),
  user: username,
  presence: z.enum(['online', 'offline']),
  lastSeen: isoTime.nullable().optional(),
  at: isoTime.optional(),
})

export type PresenceState = z.infer<typeof presenceState>
export type PresenceEntry = z.infer<typeof presenceEntry>
export type MyPresence = z.infer<typeof myPresence>
export type PresenceEvent = z.infer<typeof presenceEvent>
