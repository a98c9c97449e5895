import {isAbsolute, join} from 'node:path'

import {z} from 'zod'

import type {Received} from '../fastchat-client.js'
import type {OpenedMessage} from '../receive.js'
import type {Report} from '../reports.js'

/**
 * The daemon's local API (docs/daemon.md): what it is sent and what it
 * answers, for the server (./server.ts) that checks requests and the CLI's
 * client (./connection.ts) that checks answers.
 */

/** The file in the profile that says a daemon runs, where, and its token (0600). */
export const DAEMON_FILE = 'daemon.json'
export const daemonFile = (profileDir: string): string => join(profileDir, DAEMON_FILE)

export const daemonInfo = z.object({
  /** `http://127.0.0.1:PORT`, or `http://localhost` with `socket`. */
  url: z.url(),
  socket: z.string().optional(),
  /** Absent with --no-auth. */
  token: z.string().optional(),
  pid: z.number().int().positive(),
  startedAt: z.iso.datetime(),
})
export type DaemonInfo = z.infer<typeof daemonInfo>

/** A long poll waits at most this long: under the 60 s idle timeout of common proxies, as the chat server's own. */
export const POLL_TIMEOUT_MAX_MS = 60_000
export const POLL_TIMEOUT_DEFAULT_MS = 30_000

const nonNegative = z.string().regex(/^\d{1,15}$/, 'must be a non-negative integer').transform(Number)
const absolutePath = z.string().refine(isAbsolute, 'must be an absolute path')
const text = z.string().refine((value) => value.trim() !== '', 'must not be empty')

/**
 * Which received files the daemon saves for a request, as `inbox` and
 * `history` choose them: `none` (listed only), `contacts` (from people you
 * chose, up to `maxDownload` MiB: the default), `all` (--download); in `out`
 * instead of <profile>/downloads.
 */
export const fileChoice = z.object({
  files: z.enum(['none', 'contacts', 'all']).optional(),
  maxDownload: nonNegative.pipe(z.number().max(512)).optional(),
  out: absolutePath.optional(),
})
export type FileChoice = z.infer<typeof fileChoice>

// POST /v1/send: {to, text}, or {to, file, caption?}
export const sendBody = z
  .strictObject({to: z.string().min(1), text: text.optional(), file: absolutePath.optional(), caption: text.optional()})
  .refine((body) => (body.text === undefined) !== (body.file === undefined), 'give either text or file')
  .refine((body) => body.caption === undefined || body.file !== undefined, {message: 'a caption goes with a file', path: ['caption']})
export type SendBody = z.infer<typeof sendBody>

// POST /v1/groups {name, members}; POST /v1/groups/add|remove {group, user}; POST /v1/groups/leave {group}
export const createGroupBody = z.strictObject({name: z.string().min(1), members: z.array(z.string().min(1)).max(999).default([])})
export const memberBody = z.strictObject({group: z.string().min(1), user: z.string().min(1)})
export const leaveBody = z.strictObject({group: z.string().min(1)})
// POST /v1/keys/trust {user, fingerprint}
export const trustBody = z.strictObject({user: z.string().min(1), fingerprint: z.string().min(1)})

// GET /v1/messages?since=C&timeout=MS
export const messagesQuery = z.strictObject({
  since: nonNegative.optional(),
  timeout: nonNegative.pipe(z.number().max(POLL_TIMEOUT_MAX_MS)).default(POLL_TIMEOUT_DEFAULT_MS),
  ...fileChoice.shape,
})

// GET /v1/messages/stream?since=C (or the Last-Event-ID header)
export const streamQuery = z.strictObject({since: nonNegative.optional(), ...fileChoice.shape})
export const lastEventId = nonNegative

// GET /v1/history?with=X&limit=N
export const historyQuery = z.strictObject({
  with: z.string().min(1),
  limit: nonNegative.pipe(z.number().min(1).max(1000)).default(20),
  ...fileChoice.shape,
})

// GET /v1/status
export const statusAnswer = z.object({
  username: z.string(),
  server: z.string(),
  cursor: z.number().int().min(0),
  pid: z.number().int().positive(),
  unlocked: z.literal(true),
  /** What the daemon's followers read the chat server with; null while none runs (absent from older daemons). */
  transport: z.enum(['stream', 'poll']).nullable().optional(),
})
export type DaemonStatus = z.infer<typeof statusAnswer>

/** What the library reported while the daemon served the request: keys pinned on first use, cursor resets... */
const reports = z.array(z.looseObject({type: z.string()})).optional()
/** Messages (with `kind`) and group events (with `type`): the library's own values, as JSON. */
const itemShape = z.union([z.looseObject({id: z.string(), kind: z.string(), from: z.string()}), z.looseObject({id: z.string(), type: z.string(), seq: z.number()})])
/** Receipts for my messages (client/receipts.ts): `type: 'receipt'`, no `seq`. */
const receiptShape = z.looseObject({id: z.string(), type: z.literal('receipt'), status: z.enum(['delivered', 'read']), by: z.string(), messages: z.array(z.string())})
const item = z.custom<Received>((value) => itemShape.safeParse(value).success || receiptShape.safeParse(value).success, 'must be a message, a group event or a receipt')
const message = z.custom<OpenedMessage>((value) => itemShape.options[0].safeParse(value).success, 'must be a message')

// POST /v1/send → 201: the library's Sent (a file's adds blob, name, type and size), in its key order
const messageGroup = z.object({id: z.string(), name: z.string().nullable(), epoch: z.number().int()})
export const sentAnswer = z.object({
  id: z.string(),
  sentAt: z.string(),
  to: z.string(),
  group: messageGroup.optional(),
  members: z.number().int().optional(),
  // The direct path (docs/daemon.md): which paths carried it, why not directly, kept for a server, the id both copies share.
  via: z.array(z.enum(['direct', 'server'])).optional(),
  direct: z.enum(['unreachable', 'refused', 'too-large', 'busy']).optional(),
  queued: z.literal(true).optional(),
  signedId: z.string().optional(),
  reports,
})
export const sentFileAnswer = z.object({
  ...sentAnswer.shape,
  blob: z.string().nullable(),
  name: z.string(),
  type: z.string(),
  size: z.number().int().min(0),
})
// GET /v1/messages → 200
export const messagesAnswer = z.object({items: z.array(item), next: z.number().int().min(0), reports})
// GET /v1/messages/stream: each item event's data
export const itemAnswer = item
// GET /v1/history → 200
export const historyAnswer = z.object({with: z.looseObject({kind: z.enum(['user', 'group'])}), messages: z.array(message), reports})

// The group changes → 200: the library's KeyedGroup (the group as it is now, with its members), and GroupRef for a leave
const groupDetails = z.looseObject({id: z.string(), name: z.string(), epoch: z.number().int(), members: z.array(z.looseObject({username: z.string()})), invited: z.array(z.looseObject({username: z.string()})).default([])})
export const keyedGroupAnswer = z.object({group: groupDetails, keyedHere: z.boolean(), pinned: z.array(z.looseObject({username: z.string(), fingerprint: z.string()})), reports})
export const groupRefAnswer = z.object({id: z.string(), name: z.string().nullable(), reports})
// POST /v1/keys/trust → 200
export const trustAnswer = z.object({username: z.string(), previous: z.string().nullable(), pinned: z.string(), reports})

/** Reports travel with the answer they belong to. */
export type WithReports<T> = T & {reports?: Report[]}
