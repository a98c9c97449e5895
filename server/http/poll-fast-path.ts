import type {RequestListener, ServerResponse} from 'node:http'

import helmet from 'helmet'
import type {Logger} from 'pino'

import {clientIdHeader, eventsQuery} from '../routes/schemas.js'
import type {AccountService} from '../services/accounts.js'
import type {EventService} from '../services/events.js'
import {bearerToken} from './auth.js'
import type {HttpMetrics} from './observability.js'
import {PROBLEM_CONTENT_TYPE, problemBody, problemHeaders, toProblem} from './problem.js'

const ROUTE = '/v1/events'

/**
 * Shared by both ways a poll is served. A client's new poll replaces its old
 * one; the client is its token plus the optional X-FastChat-Client id.
 */
export const pollClient = (token: string, clientId: string | undefined) => `${token}:${clientId ?? ''}`

/** Aborts when the client goes away (also if it already has), so its poll stops at once, not at its timeout. */
export function whileConnected(res: ServerResponse): AbortSignal {
  const gone = new AbortController()
  res.once('close', () => gone.abort())
  if (res.destroyed) gone.abort()
  return gone.signal
}
const QUERY_KEYS = new Set(['since', 'timeout', 'limit'])

/** The headers helmet puts on every Express answer, computed once, so fast answers carry the same. */
function securityHeaders(): Record<string, string> {
  const headers: Record<string, string> = {}
  const res = {
    setHeader: (name: string, value: unknown) => (headers[name.toLowerCase()] = String(value)),
    removeHeader: (name: string) => delete headers[name.toLowerCase()],
  }
  helmet()({} as never, res as never, () => undefined)
  return headers
}

/**
 * GET /v1/events, the long-poll, straight on Node's request listener: the
 * request clients make most and hold longest. Express, its router and its
 * per-request objects cost about 15 KiB of memory per parked poll and a
 * good share of a poll's CPU (docs/benchmarks.md). This path serves the
 * well-formed poll; anything it does not recognise exactly (a missing or
 * odd token, an unusual query, a draining server) goes on to Express, whose
 * route answers it in full, errors included. Both run the same service and
 * answer with the same headers, metrics and problem documents.
 */
export function withPollFastPath(
  app: RequestListener,
  deps: {accounts: AccountService; events: EventService; lifecycle: {draining: boolean}; metrics: HttpMetrics; logger: Logger},
): RequestListener {
  const headers = securityHeaders()
  const answer = (res: ServerResponse, status: number, contentType: string, body: string, extra: Record<string, string> = {}) => {
    res.writeHead(status, {...headers, ...extra, 'content-type': contentType, 'cache-control': 'no-store', 'content-length': Buffer.byteLength(body)})
    res.end(body)
  }

  const serve = async (res: ServerResponse, token: string, query: {since: bigint; timeout: number; limit: number}, clientId: string | undefined) => {
    const started = process.hrtime.bigint()
    let status = 200
    try {
      // Before the first await: a close during authentication must end the poll too.
      const signal = whileConnected(res)
      const user = await deps.accounts.authenticate(token)
      const result = await deps.events.poll(user.userId, query.since, query.timeout, query.limit, signal, pollClient(token, clientId))
      if (res.writableEnded || signal.aborted) return
      answer(res, 200, 'application/json; charset=utf-8', JSON.stringify(result))
    } catch (error) {
      const problem = toProblem(error, deps.logger, {method: 'GET', path: ROUTE})
      status = problem.status
      if (!res.headersSent && !res.writableEnded) answer(res, status, PROBLEM_CONTENT_TYPE, JSON.stringify(problemBody(problem, ROUTE)), problemHeaders(problem))
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
    const token = bearerToken(req.headers.authorization)
    const clientId = req.headers['x-fastchat-client']
    const clientOk = clientId === undefined || (typeof clientId === 'string' && clientIdHeader.safeParse(clientId).success)
    const params = new URLSearchParams(url.slice(ROUTE.length + 1))
    const raw: Record<string, string> = {}
    let plain = true
    for (const [key, value] of params) {
      if (key in raw || !QUERY_KEYS.has(key)) plain = false
      raw[key] = value
    }
    const query = plain ? eventsQuery.safeParse(raw) : undefined
    if (!token || !clientOk || !query?.success) return app(req, res)
    void serve(res, token, query.data, clientId as string | undefined)
  }
}
