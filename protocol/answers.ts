import {z} from 'zod'

import {linkCode, MAX_LINK_CHECK_BYTES, MAX_LINK_KEY_BYTES, MAX_LINK_PAYLOAD_BYTES} from './requests.js'
import {epoch, errorCode, fingerprint, groupName, groupRole, isoTime, MAX_PUBLIC_KEY_BYTES, seq, username, uuid} from './primitives.js'

/**
 * The answers of the chat server and superserver routes the client uses
 * (docs/api.md), as the client checks them. A field that does not match is
 * a broken or hostile server: the client refuses the answer rather than use
 * or print it.
 */

const armored = (kind: 'PUBLIC KEY BLOCK' | 'MESSAGE', max: number) =>
  z
    .string()
    .max(max)
    .refine((value) => value.trimStart().startsWith(`-----BEGIN PGP ${kind}-----`), `must be an armored OpenPGP ${kind === 'MESSAGE' ? 'message' : 'public key'}`)

/** Bearer tokens: printable ASCII, as an HTTP header value needs. */
const token = z.string().regex(/^[\x21-\x7e]{16,512}$/, 'must be a token (16-512 printable ASCII characters)')

// POST /v1/users
export const registered = z.object({username, fingerprint})

// POST /v1/sessions
export const session = z.object({token, expiresAt: isoTime, username, device: z.object({id: uuid, name: z.string().min(1).max(80)}).optional()})

// GET /v1/users/:username
export const userKey = z.object({username, publicKey: armored('PUBLIC KEY BLOCK', MAX_PUBLIC_KEY_BYTES), fingerprint})

// POST /v1/messages
export const sent = z.object({id: uuid, sentAt: isoTime})

// POST /v1/blobs
export const uploaded = z.object({blob: uuid, size: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER)})

// POST /v1/groups
export const groupCreated = z.object({id: uuid, name: groupName, epoch})

// POST /v1/groups/:id/members, POST /v1/groups/:id/epochs
export const newEpoch = z.object({epoch})

// POST /v1/groups/:id/members: the user is invited; the epoch is unchanged until they join
export const invited = z.object({epoch, invited: username})

/** An entry of GET /v1/groups/invitations: a group I am invited to, by whom, since when. */
export const groupInvitation = z.object({group: uuid, name: groupName, by: username, invitedAt: isoTime})

// GET /v1/groups/invitations
export const invitationList = z.object({invitations: z.array(groupInvitation).max(100_000)})

// PATCH /v1/groups/:id/members/:username
export const roleSet = z.object({username, role: groupRole})

/** An entry of GET /v1/groups: `members` is a count. */
export const groupSummary = z.object({id: uuid, name: groupName, epoch, role: groupRole, members: z.number().int().min(0).max(1_000_000)})

// GET /v1/groups
export const groupList = z.object({groups: z.array(groupSummary).max(100_000)})

export const groupMember = z.object({
  username,
  role: groupRole,
  /** As the server claims it; trust decisions use the pinned key. */
  fingerprint,
  joinedAt: isoTime,
})

/** GET /v1/groups/:id. `keyedBy` is null while the current epoch has no keys. */
export const groupDetails = z.object({
  id: uuid,
  name: groupName,
  epoch,
  keyedBy: username.nullable(),
  createdAt: isoTime,
  members: z.array(groupMember).max(1_000),
  /** Open invitations: not members (no key, no messages) until they join. */
  invited: z.array(z.object({username, by: username, invitedAt: isoTime})).max(1_000).default([]),
})

/** GET /v1/groups/:id/keys/:epoch: my wrapped copy of the epoch's key, who made it, and the epoch's members. */
export const wrappedGroupKey = z.object({
  group: uuid,
  epoch,
  keyedBy: username,
  members: z.array(username).max(1_000),
  key: armored('MESSAGE', 16 * 1024),
})

/** GET /v1/assign (superserver): an http(s) URL, kept in its parsed form (no control characters survive the URL parser). */
export const assigned = z.object({
  server: z
    .url({protocol: /^https?$/, error: 'must be an http(s) URL'})
    .max(2048)
    .transform((url) => new URL(url).href.replace(/\/+$/, '')),
})

/** Problem texts are for people: one short line, whatever the server sends. */
export const PROBLEM_TEXT_MAX_CHARS = 500
const problemText = z
  .string()
  .transform((text) => (text.length > PROBLEM_TEXT_MAX_CHARS ? `${text.slice(0, PROBLEM_TEXT_MAX_CHARS)}…` : text))
  .optional()
  .catch(undefined)

/**
 * An RFC 9457 problem document (docs/errors.md). Never refused as a whole: an
 * error answer stays an error with its status; a field that does not match
 * is dropped (a `code` that is not one becomes `HTTP_<status>`). The
 * extension members the client acts on are checked; the rest are kept as data.
 */
export const problem = z.looseObject({
  title: problemText,
  detail: problemText,
  code: errorCode.optional().catch(undefined),
  /** FC_CURSOR_EXPIRED: where the stream now starts. */
  oldest: seq.optional().catch(undefined),
  /** FC_CURSOR_AHEAD: where the stream ends. */
  last: seq.optional().catch(undefined),
  /** FC_GROUP_EPOCH_STALE: the current epoch. */
  epoch: epoch.optional().catch(undefined),
  /** FC_PAYLOAD_TOO_LARGE: the limit in bytes. */
  limit: z.number().int().min(0).optional().catch(undefined),
  /** FC_RATE_LIMITED: seconds. */
  retryAfter: z.number().min(0).optional().catch(undefined),
})

export type Registered = z.infer<typeof registered>
export type Session = z.infer<typeof session>
export type UserKey = z.infer<typeof userKey>
export type Sent = z.infer<typeof sent>
export type Uploaded = z.infer<typeof uploaded>
export type GroupCreated = z.infer<typeof groupCreated>
export type GroupRole = z.infer<typeof groupRole>
export type GroupSummary = z.infer<typeof groupSummary>
export type GroupMember = z.infer<typeof groupMember>
export type GroupDetails = z.infer<typeof groupDetails>
export type GroupInvitation = z.infer<typeof groupInvitation>
export type WrappedGroupKey = z.infer<typeof wrappedGroupKey>
export type Problem = z.infer<typeof problem>

// Devices (docs/api.md, "Devices")

/** A device name as servers store it: 1-64 printable characters, and " (N)" when the name was taken. */
const deviceName = z.string().min(1).max(80)

// GET /v1/devices
export const device = z.object({id: uuid, name: deviceName, createdAt: isoTime, lastActiveAt: isoTime, current: z.boolean()})
export const deviceList = z.object({devices: z.array(device).max(10_000)})

// POST /v1/devices/links
export const linkCreated = z.object({link: linkCode, secret: token, expiresAt: isoTime})

// GET /v1/devices/links/:link with a session: what the new device asked
export const linkRequest = z.object({publicKey: armored('PUBLIC KEY BLOCK', MAX_LINK_KEY_BYTES), check: armored('MESSAGE', MAX_LINK_CHECK_BYTES), name: deviceName, expiresAt: isoTime})

// GET /v1/devices/links/:link with the polling secret
export const linkPoll = z.discriminatedUnion('status', [
  z.object({status: z.literal('pending'), expiresAt: isoTime}),
  z.object({
    status: z.literal('approved'),
    username,
    ciphertext: armored('MESSAGE', MAX_LINK_PAYLOAD_BYTES),
    token,
    expiresAt: isoTime,
    device: z.object({id: uuid, name: deviceName}),
    cursor: seq,
  }),
])

export type Device = z.infer<typeof device>
export type LinkCreated = z.infer<typeof linkCreated>
export type LinkRequest = z.infer<typeof linkRequest>
export type LinkPoll = z.infer<typeof linkPoll>
