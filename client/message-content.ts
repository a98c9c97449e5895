import {randomUUID} from 'node:crypto'

import {z} from 'zod'

/**
 * What a FastChat signature covers (DESIGN.md section 4): not just the words,
 * but which conversation they were written for and a message id of the
 * sender's choosing. openpgp.js v6 has no intended-recipient subpacket, so
 * this travels inside the signed (and encrypted) plaintext, as JSON:
 *
 *   {"fastchat": 1, "id": "<uuid>", "to": {"user": "bob"}, "sentAt": "<ISO 8601>", "text": "…"}
 *   {"fastchat": 1, "id": "<uuid>", "to": {"group": "<uuid>", "epoch": 3}, "sentAt": "…", "text": "…"}
 *
 * A file's envelope header (./file-envelope.ts) carries the same fields, and a
 * file's caption is a text content with the file's id. The receiver checks
 * that `to` is the conversation the message arrived in (a message re-encrypted
 * by its recipient to somebody else, or into another group or epoch, is not
 * verified) and drops an `id` it has already shown (an operator replaying an
 * old message under a new server id). `sentAt` is the sender's clock, kept so
 * that an old message delivered again long after the window of remembered ids
 * is not shown as new. `fastchat` is the format's version.
 */

export const CONTENT_VERSION = 1

/** A message whose signed time is this much older than the server's time for it was not just sent: a replay. */
export const REPLAY_AGE_MS = 48 * 60 * 60 * 1000
/** A sender's clock may be this far ahead of the server's. */
const CLOCK_SKEW_MS = 10 * 60 * 1000

export type Conversation = {user: string} | {group: string; epoch: number}

const conversation = z.union([
  z.strictObject({user: z.string().min(1).max(64)}),
  z.strictObject({group: z.string().min(1).max(64), epoch: z.number().int().min(0)}),
])

const binding = {
  fastchat: z.literal(CONTENT_VERSION),
  id: z.uuid(),
  to: conversation,
  sentAt: z.iso.datetime(),
}
const textContent = z.object({...binding, text: z.string()})
export const bindingSchema = z.object(binding)

export interface Binding {
  fastchat: typeof CONTENT_VERSION
  id: string
  to: Conversation
  sentAt: string
}

/** A new binding for one message (and its caption, if it is a file): a fresh id, now. */
export function newBinding(to: Conversation): Binding {
  return {fastchat: CONTENT_VERSION, id: randomUUID(), to, sentAt: new Date().toISOString()}
}

/** The plaintext to sign and encrypt for a text message (or a file's caption). */
export function packText(bound: Binding, text: string): string {
  return JSON.stringify({...bound, text})
}

/** Reads a decrypted text back: the words and what they were bound to, or null when it is not in this format. */
export function unpackText(plaintext: string): {text: string; binding: Binding} | null {
  let parsed: unknown
  try {
    parsed = JSON.parse(plaintext)
  } catch {
    return null
  }
  const result = textContent.safeParse(parsed)
  if (!result.success) return null
  const {text, ...rest} = result.data
  return {text, binding: rest as Binding}
}

/** What the message arrived as: the conversation the server says it is in, and when the server says it was sent. */
export interface Arrival {
  to: {user?: string; group?: string}
  epoch?: number
  sentAt: string
  from: string
  /** Whether `from` is the reader (history of one's own messages). */
  fromMe: boolean
  /** The reader's username. */
  me: string
}

const same = (a: string, b: string) => a.toLowerCase() === b.toLowerCase()

/**
 * Why a message is not what it claims, or null when its binding matches how it
 * arrived. Only signed content reaches here, so a mismatch means the signer
 * wrote it for another conversation (forwarded), or long ago (replayed).
 */
export function bindingProblem(bound: Binding | null, arrival: Arrival): string | null {
  if (!bound) return 'not bound to a conversation (no FastChat v1 header in the signed text)'
  const {to} = bound
  if ('user' in to) {
    if (arrival.to.group !== undefined || arrival.to.user === undefined) return `written to ${to.user}, delivered as a group message`
    // Received: it must have been written to me. Sent by me (history): to the peer the server files it under.
    const expected = arrival.fromMe ? arrival.to.user : arrival.me
    if (!same(to.user, expected) || !same(arrival.to.user, expected)) return `written to ${to.user}, not to ${expected}: forwarded by someone else`
  } else {
    if (arrival.to.group === undefined) return 'written to a group, delivered as a one-to-one message'
    if (arrival.to.group !== to.group) return 'written for another group: forwarded by someone else'
    if (arrival.epoch !== to.epoch) return `written for key epoch ${to.epoch}, delivered as epoch ${arrival.epoch ?? 'none'}`
  }
  const signedAt = Date.parse(bound.sentAt)
  const deliveredAt = Date.parse(arrival.sentAt)
  if (Number.isFinite(deliveredAt)) {
    if (deliveredAt - signedAt > REPLAY_AGE_MS) return `signed at ${bound.sentAt} but delivered as sent at ${arrival.sentAt}: an old message sent again`
    if (signedAt - deliveredAt > CLOCK_SKEW_MS) return `signed at ${bound.sentAt}, after the server says it was sent (${arrival.sentAt})`
  }
  return null
}

/** The conversation a message is sent in, as the binding names it. */
export function conversationOf(to: {user: string} | {group: string}, epoch?: number): Conversation {
  return 'user' in to ? {user: to.user} : {group: to.group, epoch: epoch ?? 0}
}
