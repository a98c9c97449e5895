import {z} from 'zod'

import {groupName as groupNameText, MAX_CIPHERTEXT_BYTES, MAX_PUBLIC_KEY_BYTES, password, username, uuid} from './primitives.js'

export {MAX_CIPHERTEXT_BYTES, MAX_PUBLIC_KEY_BYTES, password, username, uuid}

/**
 * The HTTP API's requests (docs/api.md): bodies, queries and headers as zod
 * schemas. The server's routes validate with them; the client builds its
 * requests with their types, so the two cannot drift apart.
 */

/** An armored OpenPGP message, as every ciphertext but a sealed read receipt is (checked by its header only). */
const isArmoredMessage = (value: string): boolean => value.trimStart().startsWith('-----BEGIN PGP MESSAGE-----')

export const publicKey = z
  .string()
  .max(MAX_PUBLIC_KEY_BYTES)
  .refine((value) => value.trimStart().startsWith('-----BEGIN PGP PUBLIC KEY BLOCK-----'), 'must be an armored OpenPGP public key')

export const sendMessage = z
  .strictObject({
    to: z.union([z.strictObject({user: username}), z.strictObject({group: uuid})]),
    kind: z.enum(['text', 'image']),
    ciphertext: z.string(),
    blob: uuid.optional(),
    epoch: z.number().int().min(1).max(2 ** 31 - 1).optional(),
  })
  .superRefine((message, ctx) => {
    const armored = isArmoredMessage(message.ciphertext)
    if (message.kind === 'text' && !armored) {
      ctx.addIssue({code: 'custom', path: ['ciphertext'], message: 'must be an armored OpenPGP message'})
    }
    if (message.kind === 'image') {
      // A file sent directly (peer to peer) may have no blob: its signed caption names it, and the recipient has it.
      if (!message.blob && !armored) ctx.addIssue({code: 'custom', path: ['blob'], message: 'is required for an image without a caption'})
      if (message.ciphertext !== '' && !armored) {
        ctx.addIssue({code: 'custom', path: ['ciphertext'], message: 'must be empty or an armored OpenPGP message'})
      }
    }
    if (message.kind === 'text' && message.blob) ctx.addIssue({code: 'custom', path: ['blob'], message: 'only images carry a blob'})
    if ('group' in message.to && message.epoch === undefined) {
      ctx.addIssue({code: 'custom', path: ['epoch'], message: 'is required for a group message'})
    }
  })

/** Printable ASCII without spaces, as most APIs that take one (Stripe, IETF draft) do. */
export const idempotencyKey = z.string().regex(/^[\x21-\x7e]{1,255}$/, 'must be 1-255 printable ASCII characters')

/** Names one client of an account (e.g. one `fastchat listen`), so its polls replace each other but not other clients'. */
export const clientIdHeader = z.string().regex(/^[\x21-\x7e]{1,64}$/, 'must be 1-64 printable ASCII characters')

/** Long-polls wait at most a minute: under the 60 s+ idle timeouts of common proxies plus margin for their own. */
export const POLL_TIMEOUT_MAX_MS = 60_000
export const POLL_TIMEOUT_DEFAULT_MS = 30_000
export const EVENTS_LIMIT_MAX = 1_000

export const eventsQuery = z.object({
  since: z.string().regex(/^\d{1,18}$/, 'must be a non-negative integer').default('0').transform((v) => BigInt(v)),
  timeout: z.coerce.number().int().min(0).max(POLL_TIMEOUT_MAX_MS).default(POLL_TIMEOUT_DEFAULT_MS),
  limit: z.coerce.number().int().min(1).max(EVENTS_LIMIT_MAX).default(100),
  /** `false`: a look that acknowledges nothing (no delivered receipts), for a reader that does not process what it reads (`send --wait`). */
  ack: z.enum(['true', 'false']).default('true').transform((value) => value === 'true'),
})

/** `Accept` asking `GET /v1/events` for a stream (SSE) rather than a long-poll. */
export const EVENT_STREAM_TYPE = 'text/event-stream'
export const wantsEventStream = (accept: string | undefined) => accept !== undefined && accept.toLowerCase().includes(EVENT_STREAM_TYPE)

/** `Last-Event-ID`, sent by a stream's client when it reconnects: the seq it got last; it overrides `since`. */
export const lastEventIdHeader = z
  .string()
  .regex(/^\d{1,18}$/, 'must be the seq of an event')
  .transform((v) => BigInt(v))

export const historyQuery = z.object({
  before: uuid.optional(),
  limit: z.coerce.number().int().min(1).max(200).default(50),
})

/** A group name, trimmed: shown to people, so no control characters; need not be unique. */
export const groupName = z.string().trim().pipe(groupNameText)

/** Matches MAX_GROUP_MEMBERS: the creator plus 999 others. */
export const createGroup = z.strictObject({
  name: groupName,
  members: z.array(username).max(999, 'a group has at most 1000 members').default([]),
})

export const addMember = z.strictObject({username})

export const setRole = z.strictObject({role: z.enum(['admin', 'member'])})

export const epochParam = z.coerce.number().int().min(1).max(2 ** 31 - 1)

/** A wrapped group key is one small armored OpenPGP message. */
export const MAX_WRAPPED_KEY_BYTES = 16 * 1024
export const putKeys = z.strictObject({
  keys: z
    .record(
      username,
      z
        .string()
        .max(MAX_WRAPPED_KEY_BYTES)
        .refine(isArmoredMessage, 'must be an armored OpenPGP message'),
    )
    .refine((keys) => Object.keys(keys).length <= 1000, 'at most 1000 keys'),
})

/** POST /v1/users */
export const registerBody = z.strictObject({username, password, publicKey})
/** POST /v1/sessions: any name and password are checked against the database (a wrong one is a 401, not a 400). */
export const loginBody = z.strictObject({username: z.string().max(64), password: z.string().max(1024)})
/** POST /v1/blocks */
export const blockBody = z.strictObject({username})

export type RegisterBody = z.input<typeof registerBody>
export type LoginBody = z.input<typeof loginBody>
export type SendBody = z.input<typeof sendMessage>
export type CreateGroupBody = z.input<typeof createGroup>
export type PutKeysBody = z.input<typeof putKeys>

/** A history peer: a group id, else a username. */
export const peer = z.union([uuid.transform((group) => ({group})), username.transform((user) => ({user}))])

/** A device's name (`fastchat login --device`, `device link --name`): 1-64 printable characters, spaces inside allowed. */
export const deviceName = z
  .string()
  .trim()
  .min(1)
  .max(64)
  .regex(/^[^\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}\p{Co}\p{Cn}]+$/u, 'must be 1-64 printable characters')

/** The public half of a link code: 6 Crockford base32 characters (no I, L, O, U). */
export const linkCode = z.string().regex(/^[0-9A-HJKMNP-TV-Z]{6}$/, 'must be 6 characters of 0-9 and A-Z without I, L, O, U')

/** POST /v1/sessions: a login, and the name of the device it is for. */
export const sessionBody = loginBody.extend({device: deviceName.optional()})

/** Armored OpenPGP text of at most `max` bytes (a one-time key, a check, a payload). */
const armoredBlock = (kind: string, max: number) =>
  z
    .string()
    .max(max)
    .refine((value) => value.trimStart().startsWith(`-----BEGIN PGP ${kind}-----`), `must be an armored OpenPGP ${kind.toLowerCase()}`)

/** A device payload: the private key and the pins (about 1 KiB each). Under the server's 256 KiB JSON limit: some 200 pins. */
export const MAX_LINK_PAYLOAD_BYTES = 240 * 1024

/**
 * A one-time key (Ed25519 and Curve25519, about 700 bytes armored) and its check (about 300): small caps, as anyone may
 * post links. 10,000 pending links (the cluster's cap) then hold at most some 120 MiB.
 */
export const MAX_LINK_KEY_BYTES = 8 * 1024
export const MAX_LINK_CHECK_BYTES = 4 * 1024

export const createLinkBody = z.strictObject({
  publicKey: armoredBlock('PUBLIC KEY BLOCK', MAX_LINK_KEY_BYTES),
  check: armoredBlock('MESSAGE', MAX_LINK_CHECK_BYTES),
  name: deviceName,
})

export const approveLinkBody = z.strictObject({ciphertext: armoredBlock('MESSAGE', MAX_LINK_PAYLOAD_BYTES)})

export type SessionBody = z.input<typeof sessionBody>
export type CreateLinkBody = z.input<typeof createLinkBody>
export type ApproveLinkBody = z.input<typeof approveLinkBody>
/** A read receipt's ciphertext: a sealed (or signed and encrypted) list of message ids (client/receipts.ts) fits many times over. */
export const MAX_RECEIPT_CIPHERTEXT_BYTES = 8 * 1024
/** Receipts in one POST /v1/receipts: one per sender of a batch shown, and a poll page holds at most 1,000 events. */
export const RECEIPTS_PER_REQUEST_MAX = 100

/** UTF-8 length of a string; an ASCII one (every armored text) without encoding it. */
const utf8Length = (value: string) => (/^[\x00-\x7f]*$/.test(value) ? value.length : new TextEncoder().encode(value).length)

/** A ciphertext of at most `max` bytes: an armored OpenPGP message, unless `accepts` (named by `what`) says otherwise. */
const armoredOfAtMost = (max: number, accepts = isArmoredMessage, what = 'an armored OpenPGP message') =>
  z
    .string()
    .refine((value) => utf8Length(value) <= max, `must be at most ${max} bytes`)
    .refine(accepts, `must be ${what}`)

/** A sealed read receipt (crypto/receipts.ts): `fcr1.` and base64url, nonce ‖ AES-256-GCM ciphertext ‖ tag. */
const SEALED_RECEIPT = /^fcr1\.[A-Za-z0-9_-]{38,}$/

/**
 * POST /v1/receipts: read receipts, each end-to-end encrypted to the sender of the messages read: sealed
 * (`fcr1.…`, what the client sends) or, as clients before it sent, an armored OpenPGP message.
 */
export const postReceipts = z.strictObject({
  receipts: z
    .array(
      z.strictObject({
        to: username,
        ciphertext: armoredOfAtMost(
          MAX_RECEIPT_CIPHERTEXT_BYTES,
          (value) => SEALED_RECEIPT.test(value) || isArmoredMessage(value),
          'a sealed read receipt (fcr1.…) or an armored OpenPGP message',
        ),
      }),
    )
    .min(1)
    .max(RECEIPTS_PER_REQUEST_MAX, `at most ${RECEIPTS_PER_REQUEST_MAX} receipts per request`),
})
export type ReceiptsBody = z.input<typeof postReceipts>

/** Peer offers in one POST /v1/peer-offers: one per contact, and a listener offers to at most this many at once. */
export const PEER_OFFERS_PER_REQUEST_MAX = 100

/** POST /v1/peer-offers: peer offers (client/peer.ts), each end-to-end encrypted to one contact and signed. */
export const postPeerOffers = z.strictObject({
  offers: z
    .array(z.strictObject({to: username, ciphertext: armoredOfAtMost(MAX_RECEIPT_CIPHERTEXT_BYTES)}))
    .min(1)
    .max(PEER_OFFERS_PER_REQUEST_MAX, `at most ${PEER_OFFERS_PER_REQUEST_MAX} offers per request`),
})
export type PeerOffersBody = z.input<typeof postPeerOffers>
