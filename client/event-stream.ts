import {setTimeout as sleep} from 'node:timers/promises'

import type {Dispatcher} from 'undici'
import {z} from 'zod'

import * as answers from '../protocol/answers.js'
import {eventSchema, type ServerEvent} from '../protocol/events.js'
import {MAX_CIPHERTEXT_BYTES} from '../protocol/primitives.js'
import {type ApiClient, ApiError, CLIENT_ID, NetworkError, problemError, ProtocolError, type Rejected} from './api-client.js'
import type {Reporter} from './reports.js'
import {type SseEvent, SseParser, SseTooLarge} from './sse-parser.js'

/**
 * The event stream as server-sent events (docs/api.md "Streaming events
 * (SSE)"), and the choice between it and the long poll (parsing:
 * ./sse-parser.ts).
 *
 * - EventStream: one open `GET /v1/events` with `Accept: text/event-stream`,
 *   read a batch at a time, each event checked as the long poll's are.
 * - EventTransport: what EventSync reads through; streams when it can and
 *   falls back to the long poll by itself (engine.io's idea, the other way
 *   round: the stream is tried first because a failed try costs one request).
 */

// ---------------------------------------------------------------------------
// One stream

/** A page as the long poll answers it, and as EventSync reads it. */
export interface EventsAnswer {
  events: ServerEvent[]
  next: number
  rejected: Rejected[]
}

/**
 * The largest event: a text's ciphertext at its limit, twice over (JSON may
 * escape every line end of the armor, and a group event may list 1,000
 * usernames), and the rest of the event around it.
 */
export const MAX_STREAM_EVENT_CHARS = 2 * MAX_CIPHERTEXT_BYTES + 64 * 1024
/** The server's heartbeat when its answer does not say (X-FastChat-Heartbeat-Ms): the API's 15 s. */
export const DEFAULT_HEARTBEAT_MS = 15_000
/** A stream may be this much later than its heartbeat before it is taken as dead: a busy server, a slow network. */
export const STREAM_IDLE_MARGIN_MS = 5_000
/** After a fall back to the long poll, the stream is tried again this long after (a proxy may have been fixed, or passed). */
export const STREAM_RETRY_MS = 10 * 60_000
/** The server's `retry:` when it sent none: the pause before reopening a stream that was replaced or ended at once. */
const DEFAULT_RECONNECT_MS = 1_000
/** A reconnection pause the server asks for is honoured up to this (the long poll's longest backoff). */
const MAX_RECONNECT_MS = 5_000
/** Events per batch when the caller does not say: a poll's page (event-sync.ts PAGE_SIZE). */
const BATCH_EVENTS = 100
/** A refused stream's error page is read up to this much: enough for a problem document. */
const ERROR_BODY_MAX_BYTES = 64 * 1024

const ROUTE = 'GET /v1/events (stream)'

/** The stream could not be used (not opened, or carrying nothing): auto mode falls back to the long poll; `error` is what stream mode throws. */
export class StreamUnavailable extends Error {
  constructor(
    readonly reason: string,
    readonly error: Error,
  ) {
    super(reason)
    this.name = 'StreamUnavailable'
  }
}

/** The stream ended as the protocol allows (the server closed it, or a newer one replaced it): reopen from the cursor. */
export class StreamEnded extends Error {
  constructor(readonly why: 'closed' | 'superseded') {
    super(`the event stream was ${why}`)
    this.name = 'StreamEnded'
  }
}

const readyData = z.object({next: z.number().int().min(0), heartbeatMs: z.number().int().min(1).max(3_600_000).optional()})
const streamId = z.string().regex(/^\d{1,18}$/, 'must be a seq').transform(Number).pipe(z.number().int().min(1).max(Number.MAX_SAFE_INTEGER))

const IDLE = Symbol('idle')

export interface StreamOptions {
  /** The X-FastChat-Client of this stream: a newer stream of the same one replaces it on the server. */
  clientId: string
  /** Silence (no byte) after which the stream is taken as dead; default the server's heartbeat plus STREAM_IDLE_MARGIN_MS. */
  idleMs?: number
  signal?: AbortSignal
}

/**
 * One open event stream. open() returns once the server has sent something
 * after its headers (its `ready`), so a proxy that holds the body shows as
 * StreamUnavailable within the idle interval. next() waits for the next
 * events and returns them as a page: what is already parsed, up to a page.
 */
export class EventStream {
  /** The `id:` of the last event handed out: the cursor the stream is at. */
  position: number
  readonly openedAt = Date.now()
  private readonly parser = new SseParser(MAX_STREAM_EVENT_CHARS)
  private readonly queue: SseEvent[] = []
  private readonly chunks: AsyncIterator<Buffer>
  private pending?: Promise<IteratorResult<Buffer>>
  private ended = false
  private closed = false

  private constructor(
    private readonly api: ApiClient,
    since: number,
    private readonly body: Dispatcher.ResponseData['body'],
    private idleMs: number,
    private readonly fixedIdle: boolean,
  ) {
    this.position = since
    this.chunks = body[Symbol.asyncIterator]() as AsyncIterator<Buffer>
  }

  get baseUrl(): string {
    return this.api.baseUrl
  }

  /** The server's `retry:`, for the pause before a reconnection. */
  get retryMs(): number {
    return Math.min(this.parser.retryMs ?? DEFAULT_RECONNECT_MS, MAX_RECONNECT_MS)
  }

  static async open(api: ApiClient, since: number, options: StreamOptions): Promise<EventStream> {
    const waitMs = options.idleMs ?? DEFAULT_HEARTBEAT_MS + STREAM_IDLE_MARGIN_MS
    let response: Dispatcher.ResponseData
    try {
      response = await api.openEventStream(since, options.clientId, waitMs, options.signal)
    } catch (error) {
      if (error instanceof NetworkError && error.reason === 'UND_ERR_HEADERS_TIMEOUT') {
        throw new StreamUnavailable(`the stream request had no answer within ${waitMs} ms`, error)
      }
      throw error
    }
    const type = header(response.headers['content-type'])
    if (response.statusCode !== 200) {
      const error = problemError(response.statusCode, await boundedText(response.body))
      // One of our problems (401, 409, 410, 503 draining...): the long poll would get it too, and it is handled as there.
      if (/^application\/problem\+json\b/i.test(type) && error.problem.code !== undefined) throw error
      throw new StreamUnavailable(`the server answered ${response.statusCode} to the stream request`, error)
    }
    if (!/^text\/event-stream\b/i.test(type)) {
      discard(response.body)
      const shown = type.slice(0, 60) || 'no content type'
      throw new StreamUnavailable(`the stream request was answered as ${shown}, not text/event-stream`, new ProtocolError(ROUTE, 'content-type', `is ${shown}, not text/event-stream`))
    }
    const heartbeat = Number(header(response.headers['x-fastchat-heartbeat-ms']))
    const heartbeatMs = Number.isSafeInteger(heartbeat) && heartbeat > 0 && heartbeat <= 3_600_000 ? heartbeat : DEFAULT_HEARTBEAT_MS
    const stream = new EventStream(api, since, response.body, options.idleMs ?? heartbeatMs + STREAM_IDLE_MARGIN_MS, options.idleMs !== undefined)
    // The first bytes after the headers, within the interval: a proxy that buffers passes the headers and holds the rest.
    const first = await stream.pull(options.signal).catch((error: unknown) => {
      stream.close()
      throw error
    })
    if (first === IDLE || first === 'end') {
      stream.close()
      const reason =
        first === IDLE
          ? `nothing came on the stream within ${stream.idleMs} ms of its headers (a proxy may be holding it)`
          : 'the stream ended before it carried anything'
      throw new StreamUnavailable(reason, new NetworkError(api.baseUrl, reason))
    }
    return stream
  }

  /**
   * The next page: the events parsed so far (at least one), or an empty page
   * for a `ready`. Throws StreamEnded when the stream ends, the problem's
   * ApiError for a `problem` event, NetworkError when it goes quiet for the
   * idle interval or breaks, ProtocolError when it does not follow the API.
   */
  async next(signal?: AbortSignal, limit = BATCH_EVENTS): Promise<EventsAnswer> {
    for (;;) {
      const answer = this.take(limit)
      if (answer) return answer
      if (this.ended) {
        this.close()
        throw new StreamEnded('closed')
      }
      const pulled = await this.pull(signal).catch((error: unknown) => {
        this.close()
        throw error
      })
      if (pulled === IDLE) {
        this.close()
        throw new NetworkError(this.api.baseUrl, `the event stream carried nothing for ${this.idleMs} ms`)
      }
    }
  }

  close(): void {
    if (this.closed) return
    this.closed = true
    // A read still waiting settles with the stream's destruction: nobody awaits it any more.
    this.pending?.catch(() => undefined)
    discard(this.body)
  }

  /** A page from what is queued, or undefined when nothing is. */
  private take(limit: number): EventsAnswer | undefined {
    const answer: EventsAnswer = {events: [], next: this.position, rejected: []}
    while (this.queue.length > 0 && answer.events.length + answer.rejected.length < limit) {
      const event = this.queue[0]!
      const control = event.type === 'ready' || event.type === 'superseded' || event.type === 'problem'
      // A control event waits until the events before it have been handed out.
      if (control && answer.events.length + answer.rejected.length > 0) break
      this.queue.shift()
      if (event.type === 'ready') {
        this.ready(event)
        return answer
      }
      if (event.type === 'superseded') {
        this.close()
        throw new StreamEnded('superseded')
      }
      if (event.type === 'problem') {
        this.close()
        throw streamProblem(event.data)
      }
      this.event(event, answer)
    }
    return answer.events.length + answer.rejected.length > 0 ? answer : undefined
  }

  /** `ready`: `{next, heartbeatMs}`; its heartbeat sets the idle interval when the headers did not. */
  private ready(event: SseEvent): void {
    const ready = readyData.safeParse(parseJson(event.data))
    if (!ready.success) {
      this.close()
      throw ProtocolError.from(ROUTE, ready.error, ['ready'])
    }
    if (!this.fixedIdle && ready.data.heartbeatMs !== undefined) this.idleMs = ready.data.heartbeatMs + STREAM_IDLE_MARGIN_MS
  }

  /** A stream event: its `id:` is its seq and the cursor after it; its data is checked as the long poll's events are. */
  private event(event: SseEvent, answer: EventsAnswer): void {
    const id = streamId.safeParse(event.id)
    if (!id.success) {
      this.close()
      throw ProtocolError.from(ROUTE, id.error, ['id'])
    }
    const seq = id.data
    const raw = parseJson(event.data)
    const checked = eventSchema(raw).safeParse(raw)
    if (!checked.success) {
      answer.rejected.push({seq, error: ProtocolError.from(ROUTE, checked.error, ['data'])})
    } else if (checked.data.seq !== seq) {
      answer.rejected.push({seq, error: new ProtocolError(ROUTE, 'data.seq', `is ${checked.data.seq}, not the event's id ${seq}`)})
    } else {
      answer.events.push(checked.data)
    }
    // Never backwards, whatever a server sends: the cursor only moves on.
    this.position = Math.max(this.position, seq)
    answer.next = this.position
  }

  /** One chunk into the parser: 'chunk', 'end', or IDLE when none came within the interval. */
  private async pull(signal?: AbortSignal): Promise<'chunk' | 'end' | typeof IDLE> {
    this.pending ??= this.chunks.next()
    let result: IteratorResult<Buffer> | typeof IDLE
    try {
      result = await within(this.pending, this.idleMs, signal)
    } catch (error) {
      if (signal?.aborted) throw error
      throw new NetworkError(this.api.baseUrl, `the event stream broke (${(error as Error).message})`, {cause: error})
    }
    if (result === IDLE) return IDLE
    this.pending = undefined
    try {
      if (result.done) {
        this.ended = true
        this.queue.push(...this.parser.end())
        return 'end'
      }
      this.queue.push(...this.parser.push(result.value))
      return 'chunk'
    } catch (error) {
      if (error instanceof SseTooLarge) throw new ProtocolError(ROUTE, 'event', error.message)
      throw error
    }
  }
}

/** `event: problem`: its data is a problem document; its `status` (else 503) makes it an ApiError like an answer's. */
function streamProblem(data: string): ApiError {
  const raw = parseJson(data)
  const status = (raw as {status?: unknown} | null)?.status
  const valid = typeof status === 'number' && Number.isInteger(status) && status >= 400 && status <= 599
  const error = problemError(valid ? status : 503, data)
  // Not a problem document at all: the server still said it cannot serve now.
  return answers.problem.safeParse(raw).success ? error : new ApiError(503, 'HTTP_503', 'The event stream ended with a problem it did not describe.')
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}

const header = (value: string | string[] | undefined): string => (Array.isArray(value) ? (value[0] ?? '') : (value ?? ''))

/** An error answer's body, up to ERROR_BODY_MAX_BYTES (a proxy's page may be large). */
async function boundedText(body: Dispatcher.ResponseData['body']): Promise<string> {
  const parts: Buffer[] = []
  let size = 0
  try {
    for await (const chunk of body as AsyncIterable<Buffer>) {
      parts.push(chunk)
      size += chunk.byteLength
      if (size >= ERROR_BODY_MAX_BYTES) break
    }
  } catch {
    // What came is enough to say what went wrong.
  } finally {
    discard(body)
  }
  return Buffer.concat(parts).subarray(0, ERROR_BODY_MAX_BYTES).toString('utf8')
}

/** Ends an answer's body we will not read: undici then emits an AbortError, which is ours and nobody's problem. */
function discard(body: Dispatcher.ResponseData['body']): void {
  body.on('error', () => undefined)
  body.destroy()
}

/** `promise`, or IDLE after `ms`; rejects with the signal's reason on abort. */
function within<T>(promise: Promise<T>, ms: number, signal?: AbortSignal): Promise<T | typeof IDLE> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason)
    const finish = (settle: () => void) => {
      clearTimeout(timer)
      signal?.removeEventListener('abort', onAbort)
      settle()
    }
    const onAbort = () => finish(() => reject(signal!.reason))
    const timer = setTimeout(() => finish(() => resolve(IDLE)), ms)
    signal?.addEventListener('abort', onAbort, {once: true})
    promise.then(
      (value) => finish(() => resolve(value)),
      (error: unknown) => finish(() => reject(error)),
    )
  })
}

// ---------------------------------------------------------------------------
// Choosing the transport

export type TransportMode = 'auto' | 'stream' | 'poll'
export type Transport = 'stream' | 'poll'

export interface TransportOptions {
  /** auto (default): the stream, else the long poll; stream: the stream only; poll: the long poll only. */
  mode?: TransportMode
  /** See StreamOptions.idleMs. */
  streamIdleMs?: number
  /** After a fall back, how long the long poll is used before the stream is tried again. Default STREAM_RETRY_MS (10 min). */
  streamRetryMs?: number
}

let streams = 0

/**
 * What EventSync reads through: the long poll, or the event stream held
 * open between reads. In auto mode a stream that cannot be opened (an answer
 * that is not one of our problems, not text/event-stream, or nothing after
 * its headers within the idle interval) makes it fall back to the long poll,
 * for `streamRetryMs`; then the stream is tried again. Everything the long
 * poll would also get (problems, network errors) is thrown as the poll's
 * are, for the caller's failover; a stream that ends is reopened from the
 * cursor. Reports `transport` when the transport is chosen or changes.
 */
export class EventTransport {
  /** A stream of its own on the server: two readers in one process (the daemon's) do not replace each other's. */
  readonly clientId = `${CLIENT_ID}-s${++streams}`
  private readonly mode: TransportMode
  private stream?: EventStream
  private fellBackAt?: number
  private reopenAt = 0
  private inUse?: Transport

  constructor(
    private readonly report: Reporter,
    private readonly options: TransportOptions = {},
  ) {
    this.mode = options.mode ?? 'auto'
  }

  /** The transport of the last read; undefined before the first. */
  get current(): Transport | undefined {
    return this.inUse
  }

  /** Whether the next read uses the stream. */
  get streaming(): boolean {
    if (this.mode === 'poll') return false
    if (this.mode === 'stream' || this.fellBackAt === undefined) return true
    return Date.now() - this.fellBackAt >= (this.options.streamRetryMs ?? STREAM_RETRY_MS)
  }

  /**
   * The next page after `cursor`. By long poll: waits up to `waitMs`. By
   * stream: waits for events as long as the stream lives; an empty page
   * when it opens (or ends, or falls back), so the caller sees it is
   * connected and calls again.
   */
  async read(api: ApiClient, cursor: number, waitMs: number, limit: number, signal?: AbortSignal): Promise<EventsAnswer> {
    if (!this.streaming) {
      this.use('poll')
      return api.events(cursor, waitMs, limit, signal)
    }
    // Another server (after a failover), or a cursor behind what was handed out (a page not committed): from the cursor again.
    if (this.stream && (this.stream.baseUrl !== api.baseUrl || cursor < this.stream.position)) this.close()
    if (!this.stream) {
      const pause = this.reopenAt - Date.now()
      if (pause > 0) await sleep(pause, undefined, {signal})
      try {
        this.stream = await EventStream.open(api, cursor, {clientId: this.clientId, idleMs: this.options.streamIdleMs, signal})
      } catch (error) {
        if (!(error instanceof StreamUnavailable)) throw error
        if (this.mode === 'stream') throw error.error
        this.fellBackAt = Date.now()
        this.use('poll', error.reason)
        return {events: [], next: cursor, rejected: []}
      }
      this.fellBackAt = undefined
      this.use('stream')
    }
    const stream = this.stream
    try {
      return await stream.next(signal, limit)
    } catch (error) {
      this.close()
      if (!(error instanceof StreamEnded)) throw error
      // Replaced by a newer stream, or ended almost at once: pause as the server asks (`retry:`) rather than hammer it.
      const brief = Date.now() - stream.openedAt < stream.retryMs
      if (error.why === 'superseded' || brief) this.reopenAt = Date.now() + stream.retryMs
      return {events: [], next: cursor, rejected: []}
    }
  }

  close(): void {
    this.stream?.close()
    this.stream = undefined
  }

  private use(transport: Transport, reason?: string): void {
    if (this.inUse === transport) return
    this.inUse = transport
    this.report({type: 'transport', transport, ...(reason === undefined ? {} : {reason})})
  }
}
