import {Readable} from 'node:stream'

import {request as undiciRequest} from 'undici'

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
  sentAt: string
}
export type ServerEvent = MessageEvent | {seq: number; type: string; [field: string]: unknown}
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
    return this.request('GET', `/v1/events?${query}`, {signal, timeoutMs: timeoutMs + POLL_GRACE_MS})
  }

  // GET /v1/conversations/:peer?before=&limit=
  conversation(peer: string, limit: number, before?: string): Promise<{messages: HistoryMessage[]; next: string | null}> {
    const query = new URLSearchParams({limit: String(limit), ...(before ? {before} : {})})
    return this.request('GET', `/v1/conversations/${encodeURIComponent(peer)}?${query}`)
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
