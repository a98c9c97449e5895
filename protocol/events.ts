import {z} from 'zod'

import {epoch, groupName, groupRole, isoTime, MAX_CIPHERTEXT_BYTES, seq, username, uuid} from './primitives.js'
import {presenceEvent} from './presence.js'

/**
 * What `GET /v1/events` and `GET /v1/conversations/:peer` answer with
 * (docs/api.md "Messages and events", "Group events"). Fields the client
 * uses are checked; fields it does not know are dropped, so a newer server
 * can add some. Event types this version does not know are kept as data
 * (`seq`, `type` and the rest unchecked) and never printed.
 */

/** `{user}` or `{group}`: exactly one. */
const recipient = z
  .object({user: username.optional(), group: uuid.optional()})
  .refine((to) => (to.user === undefined) !== (to.group === undefined), 'must name one user or one group')

/** `text`, `image`, or a kind a later version adds (shown as one it cannot read). */
const messageKind = z.string().regex(/^[a-z][a-z0-9_.-]{0,31}$/, 'must be a message kind')

/** A message in a conversation's history; an event adds `seq` and `type`. */
export const historyMessage = z.object({
  id: uuid,
  from: username,
  to: recipient,
  kind: messageKind,
  /** Armored; for a file, its caption or ''. */
  ciphertext: z.string().max(MAX_CIPHERTEXT_BYTES),
  /** For `kind: 'image'`: the blob holding the encrypted file. */
  blob: uuid.optional(),
  /** For a group message: the key epoch it was encrypted under. */
  epoch: epoch.optional(),
  sentAt: isoTime,
})

export const messageEvent = historyMessage.extend({seq, type: z.literal('message')})

/** Group events: `group.created`, `group.member_added`, ... (and later ones, with the same fields). */
export const groupEvent = z.object({
  seq,
  type: z.string().regex(/^group\.[a-z_]{1,32}$/, 'must be a group event type'),
  group: uuid,
  name: groupName,
  epoch,
  by: username.nullable().optional(),
  /** The usernames concerned; at most the first 100 for events about a whole epoch. */
  users: z.array(username).max(1000).default([]),
  at: isoTime.optional(),
  /** For events about a whole epoch: how many members it has. */
  members: z.number().int().min(0).max(1_000_000).optional(),
  /** For `group.role_changed`: the new role. */
  role: groupRole.optional(),
  /** For `group.member_removed`: the member removed themselves. */
  left: z.boolean().optional(),
})

/** `receipt.delivered`: recipients' clients acknowledged these messages of mine (docs/api.md, "Receipts"). */
export const deliveredReceiptEvent = z.object({
  seq,
  type: z.literal('receipt.delivered'),
  receipts: z.array(z.object({by: username, messages: z.array(uuid).max(1000)})).max(1000),
  at: isoTime.optional(),
})

/**
 * `receipt.read`: end-to-end encrypted read receipts, each from its `from`
 * (client/receipts.ts opens and verifies each); a server gathers those to one
 * user of up to a second into one event.
 */
export const readReceiptEvent = z.object({
  seq,
  type: z.literal('receipt.read'),
  receipts: z.array(z.object({from: username, ciphertext: z.string().max(MAX_CIPHERTEXT_BYTES)})).min(1).max(1000),
  at: isoTime.optional(),
})

/** `peer.offer`: an end-to-end encrypted peer offer from `from` (client/peer.ts opens and verifies it). */
export const peerOfferEvent = z.object({
  seq,
  type: z.literal('peer.offer'),
  from: username,
  ciphertext: z.string().max(MAX_CIPHERTEXT_BYTES),
  at: isoTime.optional(),
})

/** An event of a type this version does not know: kept, not trusted. */
export const otherEvent = z.looseObject({seq, type: z.string().regex(/^[a-z][a-z0-9_.-]{0,63}$/, 'must be an event type')})

export type HistoryMessage = z.infer<typeof historyMessage>
export type MessageEvent = z.infer<typeof messageEvent>
export type GroupEvent = z.infer<typeof groupEvent>
export type OtherEvent = z.infer<typeof otherEvent>
export type DeliveredReceiptEvent = z.infer<typeof deliveredReceiptEvent>
export type ReadReceiptEvent = z.infer<typeof readReceiptEvent>
export type PeerOfferEvent = z.infer<typeof peerOfferEvent>
export type ServerEvent = MessageEvent | GroupEvent | DeliveredReceiptEvent | ReadReceiptEvent | PeerOfferEvent | OtherEvent

/** The schema an event is checked against: its `type` chooses it. */
export function eventSchema(raw: unknown): z.ZodType<ServerEvent> {
  const type = typeof raw === 'object' && raw !== null ? (raw as {type?: unknown}).type : undefined
  if (type === 'message') return messageEvent
  if (typeof type === 'string' && type.startsWith('group.')) return groupEvent
  if (type === 'presence') return presenceEvent
  if (type === 'receipt.delivered') return deliveredReceiptEvent
  if (type === 'receipt.read') return readReceiptEvent
  if (type === 'peer.offer') return peerOfferEvent
  return otherEvent
}

/** The page around the events, which are checked one by one (a bad one is skipped, not the page). */
export const eventsPage = z.object({events: z.array(z.unknown()).max(10_000), next: seq})

/** History: newest first; `next` is the `before` of the following page, null on the last. */
export const historyPage = z.object({messages: z.array(z.unknown()).max(10_000), next: uuid.nullable()})
