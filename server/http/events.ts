import type {IncomingMessage, RequestListener, ServerResponse} from 'node:http'

import type {Logger} from 'pino'

import {clientIdHeader, eventsQuery, lastEventIdHeader, wantsEventStream} from '../routes/schemas.js'
import type {AccountService} from '../services/accounts.js'
import type {Delivery, StreamSink} from '../delivery/delivery.js'
import {ClientGone} from '../delivery/cancel.js'
import type {WireEvent} from '../delivery/listener.js'
import {pollAnswerJson} from '../delivery/delivery.js'
import {bearerToken} from './auth.js'
import {securityHeaders} from './security-headers.js'
import type {HttpMetrics} from './observability.js'
import {PROBLEM_CONTENT_TYPE, problemBody, problemHeaders, toProblem} from './problem.js'

const ROUTE = '/v1/events'

/** A stream writes no more while this much is unread by its client (a page of events: FASTCHAT_POLL_MAX_BYTES' default). */
const STREAM_BACKLOG_BYTES = 1024 * 1024
/** What an SSE client waits before reconnecting to a stream that ended (the `retry:` field), in ms. */
const STREAM_RETRY_MS = 1_000

/** What GET /v1/events asks, once parsed (by the fast path or by the Express route). */
export interface EventsRequest {
  userId: string
  since: bigint
  timeoutMs: number
  limit: number
  /** Whether a poll acknowledges `since` (delivered receipts); `ack=false` only looks. */
  ack?: boolean
  /** The client whose older poll or stream a new one replaces: its token plus its X-FastChat-Client id. */
  client: string
  stream: boolean
}

/**
 * Shared by both ways a poll is served. A client's new poll replaces its old
 * one; the client is its token plus the optional X-FastChat-Client id.
 */
export const pollClient = (token: string, clientId: string | undefined) => `${token}:${clientId ?? ''}`

/** Cancelled when the client goes away (also if it already has), so its poll stops at once, not at its timeout. */
export function whileConnected(res: ServerResponse): ClientGone {
  const gone = new ClientGone()
  res.once('close', () => gone.abort())
  if (res.destroyed) gone.abort()
  return gone
}

/**
 * Of the security headers, those that mean something for an answer no
 * browser renders as a document: an open stream keeps its header block in
 * memory for as long as it lives, and helmet's whole set (its content
 * security policy alone is ~300 bytes) would be most of a stream's cost.
 */
const STREAM_SECURITY_HEADERS = ['x-content-type-options', 'cross-origin-resource-policy', 'referrer-policy', 'x-frame-options']
const streamHeaders = (headers: Record<string, string>) => Object.fromEntries(Object.entries(headers).filter(([name]) => STREAM_SECURITY_HEADERS.includes(name)))

/** A stream's events as SSE (docs/api.md, "Streaming events"): `id:` is the seq, `event:` the type, `data:` the event. */
class SseSink implements StreamSink {
  constructor(
    private readonly res: ServerResponse,
    private readonly headers: Record<string, string>,
    private readonly heartbeatMs: number,
    private readonly problemJson: (error: unknown) => string,
  ) {}

  open(next: bigint): void {
    this.res.writeHead(200, {
      ...streamHeaders(this.headers),
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      // nginx and others pass a stream on as it comes when told so.
      'x-accel-buffering': 'no',
      'x-fastchat-heartbeat-ms': String(this.heartbeatMs),
    })
    this.res.write(`retry: ${STREAM_RETRY_MS}\nevent: ready\ndata: {"next":${next},"heartbeatMs":${this.heartbeatMs}}\n\n`)
    // Node keeps the header block it sent, as the rope of ~80 pieces it built it from: ~2.4 KiB
    // per open stream, for as long as the stream lives. One flat copy of it costs ~0.5 KiB.
    const sent = this.res as unknown as {_header?: unknown}
    if (typeof sent._header === 'string') sent._header = Buffer.from(sent._header, 'latin1').toString('latin1')
  }

  write(events: WireEvent[]): void {
    let text = ''
    for (const event of events) text += `id: ${event.seq}\nevent: ${event.type}\ndata: ${event.json}\n\n`
    this.res.write(text)
  }

  heartbeat(): void {
    this.res.write(': heartbeat\n\n')
  }

  end(reason?: {event: 'superseded'} | {event: 'problem'; problem: unknown}): void {
    if (this.res.writableEnded) return
    if (reason?.event === 'superseded') this.res.write('event: superseded\ndata: {}\n\n')
    else if (reason?.event === 'problem') this.res.write(`event: problem\ndata: ${this.problemJson(reason.problem)}\n\n`)
    this.res.end()
  }

  get backlogged(): boolean {
    return this.res.writableLength > STREAM_BACKLOG_BYTES
  }

  drained(timeoutMs: number): Promise<boolean> {
    if (this.res.destroyed) return Promise.resolve(false)
    return new Promise((resolve) => {
      const done = (ok: boolean) => {
        clearTimeout(timer)
        this.res.off('drain', onDrain)
        this.res.off('close', onClose)
        resolve(ok)
      }
      const onDrain = () => done(true)
      const onClose = () => done(false)
      const timer = setTimeout(() => done(false), timeoutMs)
      this.res.once('drain', onDrain)
      this.res.once('close', onClose)
    })
  }
}

export interface EventsHandlerDeps {
  delivery: Delivery
  logger: Logger
}

/**
 * GET /v1/events, poll or stream: the one handler both entry points (the
 * fast path below and the Express route) call once they have parsed and
 * authenticated the request. It answers the poll, or runs the stream until
 * it ends; it throws (before writing anything) what the caller answers as a
 * problem: a cursor the stream cannot serve, the database unavailable.
 */
export async function serveEvents(deps: EventsHandlerDeps, res: ServerResponse, request: EventsRequest, headers: Record<string, string> = {}): Promise<void> {
  // Before the first await: a close meanwhile must end the poll too.
  const signal = whileConnected(res)
  if (request.stream) {
    const problemJson = (error: unknown) => JSON.stringify(problemBody(toProblem(error, deps.logger, {method: 'GET', path: ROUTE}), ROUTE))
    const sink = new SseSink(res, headers, deps.delivery.heartbeatMs, problemJson)
    await deps.delivery.stream(request.userId, {since: request.since, limit: request.limit}, sink, signal, request.client)
    if (!res.writableEnded) res.end()
    return
  }
  const answer = await deps.delivery.poll(request.userId, {since: request.since, timeoutMs: request.timeoutMs, limit: request.limit, ack: request.ack}, signal, request.client)
  if (res.writableEnded || signal.aborted) return
  const body = pollAnswerJson(answer)
  res.writeHead(200, {...headers, 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', 'content-length': Buffer.byteLength(body)})
  res.end(body)
}

const QUERY_KEYS = new Set(['since', 'timeout', 'limit', 'ack'])

/** The parts of a GET /v1/events request the fast path takes as they are; anything else goes to Express. */
function plainRequest(req: IncomingMessage): {token: string; clientId?: string; since: bigint; timeoutMs: number; limit: number; ack: boolean; stream: boolean} | undefined {
  const url = req.url ?? ''
  const token = bearerToken(req.headers.authorization)
  const clientId = req.headers['x-fastchat-client']
  if (!token || (clientId !== undefined && (typeof clientId !== 'string' || !clientIdHeader.safeParse(clientId).success))) return undefined
  const raw: Record<string, string> = {}
  for (const [key, value] of new URLSearchParams(url.slice(ROUTE.length + 1))) {
    if (key in raw || !QUERY_KEYS.has(key)) return undefined
    raw[key] = value
  }
  const query = eventsQuery.safeParse(raw)
  if (!query.success) return undefined
  const stream = wantsEventStream(req.headers.accept)
  let since = query.data.since
  const lastEventId = req.headers['last-event-id']
  if (stream && lastEventId !== undefined) {
    const parsed = lastEventIdHeader.safeParse(lastEventId)
    if (!parsed.success) return undefined
    since = parsed.data
  }
  return {token, clientId: clientId as string | undefined, since, timeoutMs: query.data.timeout, limit: query.data.limit, ack: query.data.ack, stream}
}

/**
 * GET /v1/events straight on Node's request listener: the request clients
 * make most and hold longest. Express, its router and its per-request
 * objects cost about 15 KiB of memory per parked poll and a good share of a
 * poll's CPU (docs/benchmarks.md). This path serves the well-formed poll or
 * stream; anything it does not recognise exactly (a missing or odd token, an
 * unusual query or header, a draining server) goes on to Express, whose
 * route answers it in full, errors included. Both call serveEvents and
 * answer with the same headers, metrics and problem documents.
 */
export function withEventsFastPath(
  app: RequestListener,
  deps: {accounts: AccountService; delivery: Delivery; lifecycle: {draining: boolean}; metrics: HttpMetrics; logger: Logger},
): RequestListener {
  const headers = securityHeaders()

  const serve = async (res: ServerResponse, request: NonNullable<ReturnType<typeof plainRequest>>) => {
    const started = process.hrtime.bigint()
    let status = 200
    try {
      const user = await deps.accounts.authenticate(request.token)
      await serveEvents(deps, res, {...request, userId: user.userId, client: pollClient(request.token, request.clientId)}, headers)
    } catch (error) {
      const problem = toProblem(error, deps.logger, {method: 'GET', path: ROUTE})
      status = problem.status
      if (!res.headersSent && !res.writableEnded) {
        const body = JSON.stringify(problemBody(problem, ROUTE))
        res.writeHead(status, {...headers, ...problemHeaders(problem), 'content-type': PROBLEM_CONTENT_TYPE, 'cache-control': 'no-store', 'content-length': Buffer.byteLength(body)})
        res.end(body)
      }
    } finally {
      const seconds = Number(process.hrtime.bigint() - started) / 1e9
      deps.metrics.requests.inc({method: 'GET', route: ROUTE, status: String(status)})
      deps.metrics.duration.observe({method: 'GET', route: ROUTE}, seconds)
      if (status >= 500) deps.logger[status === 503 ? 'warn' : 'error']({method: 'GET', route: ROUTE, status, ms: Math.round(seconds * 1000)}, 'request')
    }
  }

  return (req, res) => {
    const url = req.url ?? ''
    if (req.method !== 'GET' || !url.startsWith(ROUTE) || (url.length > ROUTE.length && url[ROUTE.length] !== '?') || deps.lifecycle.draining) {
      return app(req, res)
    }
    const request = plainRequest(req)
    if (!request) return app(req, res)
    void serve(res, request)
  }
}
