import {randomUUID} from 'node:crypto'
import {Readable} from 'node:stream'

import type {Dispatcher} from 'undici'
import {z} from 'zod'

import * as answers from '../protocol/answers.js'
import {blockEntry, type BlockEntry, blockList} from '../protocol/blocks.js'
import {myPresence, type MyPresence, type PresenceEntry, presenceList} from '../protocol/presence.js'
import {eventSchema, eventsPage, historyMessage, type HistoryMessage, historyPage, type ServerEvent} from '../protocol/events.js'
import {seq} from '../protocol/primitives.js'
import type {ApproveLinkBody, CreateGroupBody, CreateLinkBody, PeerOffersBody, ReceiptsBody, RegisterBody, SendBody, SessionBody} from '../protocol/requests.js'
import {FastChatError} from './errors.js'

/**
 * A small typed client for the chat server and superserver HTTP API
 * (docs/api.md). It knows the shapes, and checks every answer against them
 * (protocol/): what does not match is a ProtocolError, never data that is
 * used or printed. It does not retry or fail over: that is the session's job
 * (./session.ts), which knows which requests are safe to repeat.
 */

/** Ordinary requests: long enough for a slow database, short enough that a dead server is noticed. */
const REQUEST_TIMEOUT_MS = 15_000
/** A long poll may legitimately take its whole timeout; allow this much more for the answer to arrive. */
const POLL_GRACE_MS = 10_000
/** Uploads and downloads may take long; they fail only when nothing moves for this long. */
const TRANSFER_IDLE_MS = 30_000
/** Upload body chunks: small enough for a smooth progress bar. */
const UPLOAD_CHUNK_BYTES = 64 * 1024

/** The server answered with an error (an RFC 9457 problem, or something that is not one). */
export class ApiError extends FastChatError {
  constructor(
    readonly status: number,
    code: string,
    message: string,
    /** The problem document, its fields checked (protocol/answers.ts): a field that did not match is absent. */
    readonly problem: answers.Problem = {},
  ) {
    super(code, message, {...problem, status})
    this.name = 'ApiError'
  }

  /** 503 means "this server cannot serve you now": draining, or without its database. Another one may. */
  get unavailable(): boolean {
    return this.status === 502 || this.status === 503 || this.status === 504
  }
}

/** No answer at all: connection refused or reset, DNS, timeout. */
export class NetworkError extends FastChatError {
  constructor(
    readonly url: string,
    /** ECONNREFUSED, EPIPE, "timed out"... */
    readonly reason: string,
    options?: {cause?: unknown},
  ) {
    super('FC_NETWORK', `Cannot reach ${url} (${reason}).`, {url, reason}, options)
    this.name = 'NetworkError'
  }
}

/**
 * The server answered, but not what the API says (a broken or hostile
 * server): the answer is refused. `field` is where it first differs, as
 * `members[0].username`.
 */
export class ProtocolError extends FastChatError {
  constructor(
    /** The route as documented: `GET /v1/groups/:id`. */
    readonly route: string,
    readonly field: string,
    readonly reason: string,
  ) {
    super('FC_BAD_RESPONSE', `The server's answer to ${route} does not match the API: ${field}: ${reason}.`)
    this.name = 'ProtocolError'
  }

  static from(route: string, error: z.ZodError, at: PropertyKey[] = []): ProtocolError {
    const [issue] = error.issues
    return new ProtocolError(route, fieldPath([...at, ...(issue?.path ?? [])]), issue?.message ?? 'not valid')
  }
}

/** An event (or history message) that did not match the API: skipped, and reported with its `seq` when it had a valid one. */
export interface Rejected {
  seq: number | null
  error: ProtocolError
}

/** True for the failures that another chat server (or a retry) may not have. */
export const isFailoverError = (error: unknown): boolean =>
  error instanceof NetworkError || (error instanceof ApiError && error.unavailable)

// The answers' types are the schemas' (protocol/): one definition of each shape.
export type {GroupEvent, HistoryMessage, MessageEvent, OtherEvent, ServerEvent} from '../protocol/events.js'
export type {DeliveredReceiptEvent, ReadReceiptEvent} from '../protocol/events.js'
export type {Device, GroupDetails, GroupInvitation, GroupMember, GroupRole, GroupSummary, LinkPoll, Session, UserKey, WrappedGroupKey} from '../protocol/answers.js'

export type {SendBody} from '../protocol/requests.js'

/** Hears of a transfer's progress: `total` once known (0 if the server did not say), then each chunk. */
export interface TransferListener {
  start?(total: number): void
  bytes?(count: number): void
}

interface RequestOptions {
  json?: unknown
  headers?: Record<string, string>
  signal?: AbortSignal
  timeoutMs?: number
}

export class ApiClient {
  constructor(
    readonly baseUrl: string,
    private readonly token?: string,
  ) {}

  withServer(baseUrl: string): ApiClient {
    return new ApiClient(baseUrl, this.token)
  }

  // POST /v1/users
  register(body: RegisterBody): Promise<answers.Registered> {
    return this.checked('POST /v1/users', answers.registered, '/v1/users', {json: body})
  }

  // POST /v1/sessions
  login(body: SessionBody): Promise<answers.Session> {
    return this.checked('POST /v1/sessions', answers.session, '/v1/sessions', {json: body})
  }

  // DELETE /v1/sessions/current
  async logout(): Promise<void> {
    await this.request('DELETE', '/v1/sessions/current')
  }

  // DELETE /v1/sessions — every session of this user, on every server
  async logoutEverywhere(): Promise<void> {
    await this.request('DELETE', '/v1/sessions')
  }

  // POST /v1/blocks (201 when new, 200 when already blocked: the same answer)
  block(username: string): Promise<BlockEntry> {
    return this.checked('POST /v1/blocks', blockEntry, '/v1/blocks', {json: {username}})
  }

  // DELETE /v1/blocks/:username
  async unblock(username: string): Promise<void> {
    await this.request('DELETE', `/v1/blocks/${encodeURIComponent(username)}`)
  }

  // GET /v1/blocks
  blocks(): Promise<{blocks: BlockEntry[]}> {
    return this.checked('GET /v1/blocks', blockList, '/v1/blocks')
  }

  // GET /v1/presence?users=a,b (at most PRESENCE_QUERY_MAX_USERS names)
  presence(usernames: string[]): Promise<{users: PresenceEntry[]}> {
    return this.checked('GET /v1/presence', presenceList, `/v1/presence?users=${usernames.map(encodeURIComponent).join(',')}`)
  }

  // GET /v1/me/presence
  myPresence(): Promise<MyPresence> {
    return this.checked('GET /v1/me/presence', myPresence, '/v1/me/presence')
  }

  // PUT /v1/me/presence
  setPresence(visible: boolean): Promise<MyPresence> {
    return this.checked('PUT /v1/me/presence', myPresence, '/v1/me/presence', {json: {visible}})
  }

  // GET /v1/users/:username
  user(username: string): Promise<answers.UserKey> {
    return this.checked('GET /v1/users/:username', answers.userKey, `/v1/users/${encodeURIComponent(username)}`)
  }

  // POST /v1/messages
  send(body: SendBody, idempotencyKey: string): Promise<answers.Sent> {
    return this.checked('POST /v1/messages', answers.sent, '/v1/messages', {json: body, headers: {'idempotency-key': idempotencyKey}})
  }

  /**
   * GET /v1/events?since=C&timeout=MS&limit=N. The page must match the API;
   * each event is checked on its own, and one that does not match is in
   * `rejected` instead of `events`: the rest of the page is still read, and
   * `next` still moves the cursor past it (docs/cli.md "What is printed").
   */
  async events(since: number, timeoutMs: number, limit: number, signal?: AbortSignal): Promise<{events: ServerEvent[]; next: number; rejected: Rejected[]}> {
    const query = new URLSearchParams({since: String(since), timeout: String(timeoutMs), limit: String(limit)})
    const route = 'GET /v1/events'
    // Each process is its own client: a `listen` and an `inbox` of one profile must not replace each other's polls.
    const options = {signal, timeoutMs: timeoutMs + POLL_GRACE_MS, headers: {'x-fastchat-client': CLIENT_ID}}
    const page = await this.checked(route, eventsPage, `/v1/events?${query}`, options)
    const {valid: events, rejected} = checkEach(route, 'events', page.events, eventSchema)
    return {events, next: page.next, rejected}
  }

  // GET /v1/conversations/:peer?before=&limit= — checked message by message, as events are.
  async conversation(peer: string, limit: number, before?: string): Promise<{messages: HistoryMessage[]; next: string | null; rejected: Rejected[]}> {
    const query = new URLSearchParams({limit: String(limit), ...(before ? {before} : {})})
    const route = 'GET /v1/conversations/:peer'
    const page = await this.checked(route, historyPage, `/v1/conversations/${encodeURIComponent(peer)}?${query}`)
    const {valid: messages, rejected} = checkEach(route, 'messages', page.messages, () => historyMessage)
    return {messages, next: page.next, rejected}
  }

  // POST /v1/groups
  createGroup(body: CreateGroupBody): Promise<answers.GroupCreated> {
    return this.checked('POST /v1/groups', answers.groupCreated, '/v1/groups', {json: body})
  }

  // GET /v1/groups
  groups(): Promise<{groups: answers.GroupSummary[]}> {
    return this.checked('GET /v1/groups', answers.groupList, '/v1/groups')
  }

  // GET /v1/groups/:id
  group(id: string): Promise<answers.GroupDetails> {
    return this.checked('GET /v1/groups/:id', answers.groupDetails, `/v1/groups/${encodeURIComponent(id)}`)
  }

  // POST /v1/groups/:id/members: an invitation
  addGroupMember(id: string, username: string): Promise<{epoch: number; invited: string}> {
    return this.checked('POST /v1/groups/:id/members', answers.invited, `/v1/groups/${encodeURIComponent(id)}/members`, {json: {username}})
  }

  // GET /v1/groups/invitations
  invitations(): Promise<{invitations: answers.GroupInvitation[]}> {
    return this.checked('GET /v1/groups/invitations', answers.invitationList, '/v1/groups/invitations')
  }

  // POST /v1/groups/:id/join
  joinGroup(id: string): Promise<{epoch: number}> {
    return this.checked('POST /v1/groups/:id/join', answers.newEpoch, `/v1/groups/${encodeURIComponent(id)}/join`)
  }

  // POST /v1/groups/:id/decline
  async declineGroup(id: string): Promise<void> {
    await this.request('POST', `/v1/groups/${encodeURIComponent(id)}/decline`)
  }

  // POST /v1/groups/:id/epochs
  newGroupEpoch(id: string): Promise<{epoch: number}> {
    return this.checked('POST /v1/groups/:id/epochs', answers.newEpoch, `/v1/groups/${encodeURIComponent(id)}/epochs`)
  }

  // PATCH /v1/groups/:id/members/:username
  setGroupRole(id: string, username: string, role: answers.GroupRole): Promise<{username: string; role: answers.GroupRole}> {
    const path = `/v1/groups/${encodeURIComponent(id)}/members/${encodeURIComponent(username)}`
    return this.checked('PATCH /v1/groups/:id/members/:username', answers.roleSet, path, {json: {role}})
  }

  // DELETE /v1/groups/:id/members/:username
  async removeGroupMember(id: string, username: string): Promise<void> {
    await this.request('DELETE', `/v1/groups/${encodeURIComponent(id)}/members/${encodeURIComponent(username)}`)
  }

  // PUT /v1/groups/:id/keys/:epoch
  async putGroupKeys(id: string, epoch: number, keys: Record<string, string>): Promise<void> {
    await this.request('PUT', `/v1/groups/${encodeURIComponent(id)}/keys/${epoch}`, {json: {keys}})
  }

  // GET /v1/groups/:id/keys/:epoch
  groupKey(id: string, epoch: number): Promise<answers.WrappedGroupKey> {
    return this.checked('GET /v1/groups/:id/keys/:epoch', answers.wrappedGroupKey, `/v1/groups/${encodeURIComponent(id)}/keys/${epoch}`)
  }

  // POST /v1/blobs: the bytes, streamed (a new stream per call, so a retry sends them again).
  async uploadBlob(data: Uint8Array, listener: TransferListener = {}): Promise<answers.Uploaded> {
    listener.start?.(data.byteLength)
    // Counted as undici pulls them, which is as the socket takes them (give or take its buffers).
    const body = Readable.from(chunks(data, (count) => listener.bytes?.(count)), {objectMode: false})
    const headers = {'content-type': 'application/octet-stream', 'content-length': String(data.byteLength), accept: 'application/json'}
    const response = await this.transfer('POST', '/v1/blobs', {headers, body})
    const text = await response.body.text()
    if (response.statusCode === 201) return checkAnswer('POST /v1/blobs', answers.uploaded, parseJson(text))
    throw problemError(response.statusCode, text)
  }

  // GET /v1/blobs/:blob: the bytes, refused beyond `maxBytes` (announced or actual).
  async downloadBlob(blob: string, maxBytes: number, listener: TransferListener = {}): Promise<Uint8Array> {
    const response = await this.transfer('GET', `/v1/blobs/${encodeURIComponent(blob)}`, {headers: {accept: 'application/octet-stream'}})
    if (response.statusCode !== 200) throw problemError(response.statusCode, await response.body.text())
    const announced = Number(response.headers['content-length'] ?? 0)
    if (announced > maxBytes) {
      response.body.destroy()
      throw new ApiError(413, 'FC_FILE_TOO_LARGE', `The file is larger (${announced} bytes) than this client accepts (${maxBytes}).`)
    }
    listener.start?.(Number.isSafeInteger(announced) ? announced : 0)
    const parts: Buffer[] = []
    let received = 0
    try {
      for await (const chunk of response.body) {
        received += (chunk as Buffer).byteLength
        if (received > maxBytes) throw new ApiError(413, 'FC_FILE_TOO_LARGE', `The file is larger than this client accepts (${maxBytes} bytes).`)
        parts.push(chunk as Buffer)
        listener.bytes?.((chunk as Buffer).byteLength)
      }
    } catch (error) {
      response.body.destroy()
      if (error instanceof ApiError) throw error
      throw new NetworkError(this.baseUrl, networkReason(error), {cause: error})
    }
    return Buffer.concat(parts, received)
  }

  /**
   * GET /v1/events?since=C with `Accept: text/event-stream`: the answer as it
   * comes, headers first, for ./event-stream.ts to read. No body timeout: the
   * reader times the stream's silences itself (heartbeats).
   */
  async openEventStream(since: number, clientId: string, headersTimeoutMs: number, signal?: AbortSignal): Promise<Dispatcher.ResponseData> {
    // timeout=0: a server that does not stream answers at once as the long poll (JSON), not after its 30 s wait.
    const query = new URLSearchParams({since: String(since), timeout: '0'})
    const headers: Record<string, string> = {accept: 'text/event-stream', 'cache-control': 'no-store', 'x-fastchat-client': clientId}
    if (this.token) headers.authorization = `Bearer ${this.token}`
    const {request: undiciRequest} = await import('undici')
    try {
      return await undiciRequest(new URL(`/v1/events?${query}`, this.baseUrl), {method: 'GET', headers, signal, headersTimeout: headersTimeoutMs, bodyTimeout: 0})
    } catch (error) {
      if (signal?.aborted) throw error
      throw new NetworkError(this.baseUrl, networkReason(error), {cause: error})
    }
  }

  /** undici for transfers: a streamed body, and timeouts on inactivity rather than on the whole transfer. */
  private async transfer(method: string, path: string, options: {headers: Record<string, string>; body?: Readable}) {
    const headers: Record<string, string> = {...options.headers}
    if (this.token) headers.authorization = `Bearer ${this.token}`
    // Loaded here, not at start-up: only file transfers need it, and it costs every command ~80 ms to load.
    const {request: undiciRequest} = await import('undici')
    try {
      return await undiciRequest(new URL(path, this.baseUrl), {
        method: method as 'GET' | 'POST',
        headers,
        body: options.body,
        headersTimeout: TRANSFER_IDLE_MS,
        bodyTimeout: TRANSFER_IDLE_MS,
      })
    } catch (error) {
      throw new NetworkError(this.baseUrl, networkReason(error), {cause: error})
    }
  }

  // GET /v1/devices
  devices(): Promise<{devices: answers.Device[]}> {
    return this.checked('GET /v1/devices', answers.deviceList, '/v1/devices')
  }

  // DELETE /v1/devices/:id
  async revokeDevice(id: string): Promise<void> {
    await this.request('DELETE', `/v1/devices/${encodeURIComponent(id)}`)
  }

  // POST /v1/devices/links (no session: the new device has none yet)
  createLink(body: CreateLinkBody): Promise<answers.LinkCreated> {
    return this.checked('POST /v1/devices/links', answers.linkCreated, '/v1/devices/links', {json: body})
  }

  // GET /v1/devices/links/:link, by the new device: with the link's polling secret instead of a session
  pollLink(link: string, secret: string): Promise<answers.LinkPoll> {
    return this.checked('GET /v1/devices/links/:link', answers.linkPoll, `/v1/devices/links/${encodeURIComponent(link)}`, {headers: {authorization: `Bearer ${secret}`}})
  }

  // GET /v1/devices/links/:link, by the approving device
  linkRequest(link: string): Promise<answers.LinkRequest> {
    return this.checked('GET /v1/devices/links/:link', answers.linkRequest, `/v1/devices/links/${encodeURIComponent(link)}`)
  }

  // POST /v1/devices/links/:link/approve
  async approveLink(link: string, body: ApproveLinkBody): Promise<void> {
    await this.request('POST', `/v1/devices/links/${encodeURIComponent(link)}/approve`, {json: body})
  }

  /** A request whose answer must match `schema`; `route` names it in errors as documented (`GET /v1/groups/:id`). */
  async checked<S extends z.ZodType>(route: string, schema: S, path: string, options: RequestOptions = {}): Promise<z.output<S>> {
    const [method] = route.split(' ')
    return checkAnswer(route, schema, await this.request<unknown>(method!, path, options))
  }

  // POST /v1/peer-offers — peer offers, each already encrypted and signed (./peer.ts)
  async postPeerOffers(body: PeerOffersBody): Promise<void> {
    await this.request('POST', '/v1/peer-offers', {json: body})
  }

  // GET /v1/me/address — the address this server sees me at (a peer endpoint's candidate)
  myAddress(): Promise<{address: string}> {
    return this.checked('GET /v1/me/address', z.object({address: z.string().max(100)}), '/v1/me/address')
  }

  // POST /v1/receipts — read receipts, each already encrypted and signed (./receipts.ts)
  async postReceipts(body: ReceiptsBody): Promise<void> {
    await this.request('POST', '/v1/receipts', {json: body})
  }

  /**
   * GET /v1/events?...&ack=false: a look at the stream that acknowledges
   * nothing (no delivered receipts for what it sees), under a client id of its
   * own so it replaces no poll of this process. For `send --wait`.
   */
  async peekEvents(since: number, timeoutMs: number, limit: number, signal?: AbortSignal): Promise<{events: ServerEvent[]; next: number; rejected: Rejected[]}> {
    const query = new URLSearchParams({since: String(since), timeout: String(timeoutMs), limit: String(limit), ack: 'false'})
    const route = 'GET /v1/events'
    const options = {signal, timeoutMs: timeoutMs + POLL_GRACE_MS, headers: {'x-fastchat-client': `${CLIENT_ID}-peek`}}
    const page = await this.checked(route, eventsPage, `/v1/events?${query}`, options)
    const {valid: events, rejected} = checkEach(route, 'events', page.events, eventSchema)
    return {events, next: page.next, rejected}
  }

  /** A request whose answer is returned unchecked: for answers without a body; anything the caller uses goes through checked(). */
  async request<T>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
    const url = new URL(path, this.baseUrl).toString()
    const headers: Record<string, string> = {accept: 'application/json', ...options.headers}
    if (this.token && !options.headers?.authorization) headers.authorization = `Bearer ${this.token}`
    if (options.json !== undefined) headers['content-type'] = 'application/json'
    const timeout = AbortSignal.timeout(options.timeoutMs ?? REQUEST_TIMEOUT_MS)
    const signal = options.signal ? AbortSignal.any([options.signal, timeout]) : timeout
    let response: Response
    let text: string
    try {
      response = await fetch(url, {method, headers, body: options.json === undefined ? undefined : JSON.stringify(options.json), signal})
      text = await response.text()
    } catch (error) {
      // The caller's own abort (Ctrl-C in `listen`) is not a network failure.
      if (options.signal?.aborted) throw error
      if (timeout.aborted) throw new NetworkError(this.baseUrl, 'timed out', {cause: error})
      throw new NetworkError(this.baseUrl, networkReason(error), {cause: error})
    }
    if (response.ok) return parseJson(text) as T
    throw problemError(response.status, text, response.statusText)
  }
}

/** Names this process to the server, so that its next poll replaces its last one (a poll cut off by the network) but not another process's. */
export const CLIENT_ID = `cli-${randomUUID()}`

// GET /v1/assign?avoid=URL (superserver): `avoid` names the servers just failed on, passed over while another is healthy
export async function assignServer(superserverUrl: string, avoid: string[] = []): Promise<string> {
  const query = new URLSearchParams(avoid.map((url) => ['avoid', url])).toString()
  const {server} = await new ApiClient(superserverUrl).checked('GET /v1/assign', answers.assigned, `/v1/assign${query ? `?${query}` : ''}`)
  return server
}

function checkAnswer<S extends z.ZodType>(route: string, schema: S, body: unknown): z.output<S> {
  const result = schema.safeParse(body)
  if (!result.success) throw ProtocolError.from(route, result.error)
  return result.data
}

/** Checks the items of a list one by one: the ones that match, and the others with what was wrong (`field` under `list[i]`). */
function checkEach<T>(route: string, list: string, items: unknown[], schemaFor: (item: unknown) => z.ZodType<T>): {valid: T[]; rejected: Rejected[]} {
  const valid: T[] = []
  const rejected: Rejected[] = []
  items.forEach((item, i) => {
    const result = schemaFor(item).safeParse(item)
    if (result.success) {
      valid.push(result.data)
      return
    }
    const position = seq.safeParse((item as {seq?: unknown} | null)?.seq)
    rejected.push({seq: position.success ? position.data : null, error: ProtocolError.from(route, result.error, [list, i])})
  })
  return {valid, rejected}
}

/** `members[0].username`; the whole answer is `(the answer)`. */
function fieldPath(path: PropertyKey[]): string {
  if (path.length === 0) return '(the answer)'
  return path.map((part, i) => (typeof part === 'number' ? `[${part}]` : i === 0 ? String(part) : `.${String(part)}`)).join('')
}

/** A reason phrase is the server's text too: kept short, and printed through the sanitizer like a problem's detail. */
const STATUS_TEXT_MAX_CHARS = 100

/**
 * An error answer as an ApiError: the RFC 9457 problem's detail (or title)
 * and code when it has valid ones (protocol/answers.ts), else the status.
 */
export function problemError(status: number, text: string, statusText = ''): ApiError {
  const parsed = answers.problem.safeParse(parseJson(text))
  const problem = parsed.success ? parsed.data : {}
  const message = problem.detail || problem.title || statusText.slice(0, STATUS_TEXT_MAX_CHARS) || `HTTP ${status}`
  return new ApiError(status, problem.code ?? `HTTP_${status}`, message, problem)
}

function* chunks(data: Uint8Array, taken: (count: number) => void): Generator<Buffer> {
  for (let offset = 0; offset < data.byteLength; offset += UPLOAD_CHUNK_BYTES) {
    const chunk = Buffer.from(data.buffer, data.byteOffset + offset, Math.min(UPLOAD_CHUNK_BYTES, data.byteLength - offset))
    yield chunk
    taken(chunk.byteLength)
  }
}

function parseJson(text: string): unknown {
  if (text === '') return undefined
  try {
    return JSON.parse(text)
  } catch {
    return text
  }
}

/** fetch() fails with a bare "fetch failed"; the useful part (ECONNREFUSED...) is in its cause. */
export function networkReason(error: unknown): string {
  let current: unknown = error
  for (let depth = 0; depth < 4 && current; depth++) {
    const {code} = current as {code?: unknown}
    if (typeof code === 'string') return code
    current = (current as {cause?: unknown}).cause
  }
  return error instanceof Error ? error.message : String(error)
}
