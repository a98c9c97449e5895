import {randomUUID} from 'node:crypto'
import {Readable} from 'node:stream'


/**
 * A small typed client for the chat server and superserver HTTP API
 * (docs/api.md). It knows the shapes; it does not retry or fail over: that is
 * the session's job (./session.ts), which knows which requests are safe to repeat.
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
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly problem: Record<string, unknown> = {},
  ) {
    super(message)
    this.name = 'ApiError'
  }

  /** 503 means "this server cannot serve you now": draining, or without its database. Another one may. */
  get unavailable(): boolean {
    return this.status === 502 || this.status === 503 || this.status === 504
  }
}

/** No answer at all: connection refused or reset, DNS, timeout. */
export class NetworkError extends Error {
  constructor(
    readonly url: string,
    /** ECONNREFUSED, EPIPE, "timed out"... */
    readonly reason: string,
    options?: {cause?: unknown},
  ) {
    super(`Cannot reach ${url} (${reason}).`, options)
    this.name = 'NetworkError'
  }
}

/** True for the failures that another chat server (or a retry) may not have. */
export const isFailoverError = (error: unknown): boolean =>
  error instanceof NetworkError || (error instanceof ApiError && error.unavailable)

export interface MessageEvent {
  seq: number
  type: 'message'
  id: string
  from: string
  to: {user?: string; group?: string}
  kind: string
  ciphertext: string
  /** For `kind: 'image'`: the blob holding the encrypted file. */
  blob?: string
  /** For a group message: the key epoch it was encrypted under. */
  epoch?: number
  sentAt: string
}
/** Any other event (group events, and types this version does not know), with its fields unchecked. */
export interface OtherEvent {
  seq: number
  type: string
  [field: string]: unknown
}
export type ServerEvent = MessageEvent | OtherEvent
export type HistoryMessage = Omit<MessageEvent, 'seq' | 'type'>

export interface UserKey {
  username: string
  publicKey: string
  fingerprint: string
}

export type SendBody =
  | {to: {user: string}; kind: 'text'; ciphertext: string}
  /** `ciphertext`: the armored caption, or ''. */
  | {to: {user: string}; kind: 'image'; blob: string; ciphertext: string}
  | {to: {group: string}; epoch: number; kind: 'text'; ciphertext: string}
  | {to: {group: string}; epoch: number; kind: 'image'; blob: string; ciphertext: string}

export type GroupRole = 'admin' | 'member'

/** An entry of GET /v1/groups: `members` is a count. */
export interface GroupSummary {
  id: string
  name: string
  epoch: number
  role: GroupRole
  members: number
}

export interface GroupMember {
  username: string
  role: GroupRole
  /** As the server claims it; trust decisions use the pinned key (./trust.ts). */
  fingerprint: string
  joinedAt: string
}

/** GET /v1/groups/:id. `keyedBy` is null while the current epoch has no keys. */
export interface GroupDetails {
  id: string
  name: string
  epoch: number
  keyedBy: string | null
  createdAt: string
  members: GroupMember[]
}

/** GET /v1/groups/:id/keys/:epoch: my wrapped copy of the epoch's key, who made it, and the epoch's members. */
export interface WrappedGroupKey {
  group: string
  epoch: number
  keyedBy: string
  members: string[]
  key: string
}

/** Hears of a transfer's progress: `total` once known (0 if the server did not say), then each chunk. */
export interface TransferListener {
  start?(total: number): void
  bytes?(count: number): void
}

export interface Session {
  token: string
  expiresAt: string
  username: string
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
  register(body: {username: string; password: string; publicKey: string}): Promise<{username: string; fingerprint: string}> {
    return this.request('POST', '/v1/users', {json: body})
  }

  // POST /v1/sessions
  login(body: {username: string; password: string}): Promise<Session> {
    return this.request('POST', '/v1/sessions', {json: body})
  }

  // DELETE /v1/sessions/current
  logout(): Promise<void> {
    return this.request('DELETE', '/v1/sessions/current')
  }

  // GET /v1/users/:username
  user(username: string): Promise<UserKey> {
    return this.request('GET', `/v1/users/${encodeURIComponent(username)}`)
  }

  // POST /v1/messages
  send(body: SendBody, idempotencyKey: string): Promise<{id: string; sentAt: string}> {
    return this.request('POST', '/v1/messages', {json: body, headers: {'idempotency-key': idempotencyKey}})
  }

  // GET /v1/events?since=C&timeout=MS&limit=N
  events(since: number, timeoutMs: number, limit: number, signal?: AbortSignal): Promise<{events: ServerEvent[]; next: number}> {
    const query = new URLSearchParams({since: String(since), timeout: String(timeoutMs), limit: String(limit)})
    // Each process is its own client: a `listen` and an `inbox` of one profile must not replace each other's polls.
    return this.request('GET', `/v1/events?${query}`, {signal, timeoutMs: timeoutMs + POLL_GRACE_MS, headers: {'x-fastchat-client': CLIENT_ID}})
  }

  // GET /v1/conversations/:peer?before=&limit=
  conversation(peer: string, limit: number, before?: string): Promise<{messages: HistoryMessage[]; next: string | null}> {
    const query = new URLSearchParams({limit: String(limit), ...(before ? {before} : {})})
    return this.request('GET', `/v1/conversations/${encodeURIComponent(peer)}?${query}`)
  }

  // POST /v1/groups
  createGroup(body: {name: string; members: string[]}): Promise<{id: string; name: string; epoch: number}> {
    return this.request('POST', '/v1/groups', {json: body})
  }

  // GET /v1/groups
  groups(): Promise<{groups: GroupSummary[]}> {
    return this.request('GET', '/v1/groups')
  }

  // GET /v1/groups/:id
  group(id: string): Promise<GroupDetails> {
    return this.request('GET', `/v1/groups/${encodeURIComponent(id)}`)
  }

  // POST /v1/groups/:id/members
  addGroupMember(id: string, username: string): Promise<{epoch: number}> {
    return this.request('POST', `/v1/groups/${encodeURIComponent(id)}/members`, {json: {username}})
  }

  // PATCH /v1/groups/:id/members/:username
  // POST /v1/groups/:id/epochs
  newGroupEpoch(id: string): Promise<{epoch: number}> {
    return this.request('POST', `/v1/groups/${encodeURIComponent(id)}/epochs`)
  }

  setGroupRole(id: string, username: string, role: GroupRole): Promise<{username: string; role: GroupRole}> {
    return this.request('PATCH', `/v1/groups/${encodeURIComponent(id)}/members/${encodeURIComponent(username)}`, {json: {role}})
  }

  // DELETE /v1/groups/:id/members/:username
  removeGroupMember(id: string, username: string): Promise<void> {
    return this.request('DELETE', `/v1/groups/${encodeURIComponent(id)}/members/${encodeURIComponent(username)}`)
  }

  // PUT /v1/groups/:id/keys/:epoch
  putGroupKeys(id: string, epoch: number, keys: Record<string, string>): Promise<void> {
    return this.request('PUT', `/v1/groups/${encodeURIComponent(id)}/keys/${epoch}`, {json: {keys}})
  }

  // GET /v1/groups/:id/keys/:epoch
  groupKey(id: string, epoch: number): Promise<WrappedGroupKey> {
    return this.request('GET', `/v1/groups/${encodeURIComponent(id)}/keys/${epoch}`)
  }

  // POST /v1/blobs: the bytes, streamed (a new stream per call, so a retry sends them again).
  async uploadBlob(data: Uint8Array, listener: TransferListener = {}): Promise<{blob: string; size: number}> {
    listener.start?.(data.byteLength)
    // Counted as undici pulls them, which is as the socket takes them (give or take its buffers).
    const body = Readable.from(chunks(data, (count) => listener.bytes?.(count)), {objectMode: false})
    const headers = {'content-type': 'application/octet-stream', 'content-length': String(data.byteLength), accept: 'application/json'}
    const response = await this.transfer('POST', '/v1/blobs', {headers, body})
    const text = await response.body.text()
    if (response.statusCode === 201) return parseJson(text) as {blob: string; size: number}
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

  async request<T>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
    const url = new URL(path, this.baseUrl).toString()
    const headers: Record<string, string> = {accept: 'application/json', ...options.headers}
    if (this.token) headers.authorization = `Bearer ${this.token}`
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
const CLIENT_ID = `cli-${randomUUID()}`

// GET /v1/assign (superserver)
export async function assignServer(superserverUrl: string): Promise<string> {
  const {server} = await new ApiClient(superserverUrl).request<{server: string}>('GET', '/v1/assign')
  return server
}

/** An error answer as an ApiError: the RFC 9457 problem's detail and code when there is one. */
function problemError(status: number, text: string, statusText = ''): ApiError {
  const body = parseJson(text)
  const problem = typeof body === 'object' && body !== null ? (body as Record<string, unknown>) : {}
  const detail = typeof problem.detail === 'string' ? problem.detail : typeof problem.title === 'string' ? problem.title : statusText
  const code = typeof problem.code === 'string' ? problem.code : `HTTP_${status}`
  return new ApiError(status, code, detail || `HTTP ${status}`, problem)
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
function networkReason(error: unknown): string {
  let current: unknown = error
  for (let depth = 0; depth < 4 && current; depth++) {
    const {code} = current as {code?: unknown}
    if (typeof code === 'string') return code
    current = (current as {cause?: unknown}).cause
  }
  return error instanceof Error ? error.message : String(error)
}
