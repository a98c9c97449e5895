import {z} from 'zod'

import {CryptoError, type CryptoErrorCode} from '../../crypto/index.js'
import {errorCodes} from '../../protocol/errors.js'
import {problem as upstreamProblem} from '../../protocol/answers.js'
import {ApiError, NetworkError, ProtocolError} from '../api-client.js'
import {FastChatError} from '../errors.js'

/**
 * The daemon's errors as RFC 9457 problems, and back. The daemon answers
 * every failure with `{type, title, status, detail, code}`, plus `kind` and
 * `data`, what the library's error carried: so that a CLI command run
 * through the daemon rebuilds the same error and says the same thing, with
 * the same exit code and hint, as when it runs alone. Never a stack trace.
 */

export const PROBLEM_CONTENT_TYPE = 'application/problem+json'
const PROBLEM_TYPE_BASE = 'https://fastchat.dev/docs/errors#'

/** The daemon's own refusals: HTTP usage, not the library's. */
export class DaemonError extends FastChatError {
  constructor(
    readonly status: number,
    code: 'FC_VALIDATION' | 'FC_MALFORMED_JSON' | 'FC_UNSUPPORTED_MEDIA_TYPE' | 'FC_PAYLOAD_TOO_LARGE' | 'FC_UNAUTHORIZED' | 'FC_FORBIDDEN' | 'FC_ROUTE_NOT_FOUND',
    message: string,
  ) {
    super(code, message)
    this.name = 'DaemonError'
  }
}

/** Which error class a problem came from, so the other side can rebuild it. */
type Kind = 'daemon' | 'api' | 'network' | 'protocol' | 'crypto' | 'client' | 'internal'

export interface DaemonProblem {
  type: string
  title: string
  status: number
  detail: string
  code: string
  kind: Kind
  data?: Record<string, unknown>
  /** For `kind: 'api'`: the chat server's status. */
  upstream?: number
}

const TITLES: Record<number, string> = {
  400: 'Invalid request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not found',
  409: 'Conflict',
  413: 'Payload too large',
  415: 'Unsupported media type',
  429: 'Too many requests',
  500: 'Internal error',
  502: 'Bad gateway',
}

/** Client codes that say "a person must look at keys", and those that say "the servers failed": not the request's fault. */
const TRUST_CODES = new Set(['FC_KEY_CHANGED', 'FC_KEY_LOOKUP_MISMATCH', 'FC_BAD_KEY', 'FC_BAD_GROUP_KEY'])
const UPSTREAM_CODES = new Set(['FC_NO_CHAT_SERVER', 'FC_UPLOAD_CUT_OFF', 'FC_GROUP_REKEY_FAILED'])

/** The status for a library error: the table's for a code that has one, else by what it means. */
function statusOf(code: string): number {
  const entry = (errorCodes as Record<string, {status?: number}>)[code]
  if (entry?.status !== undefined) return entry.status
  if (TRUST_CODES.has(code)) return 409
  if (UPSTREAM_CODES.has(code)) return 502
  return 400
}

/** Anything thrown while serving a request, as the problem answered; `internal` for what is not ours to explain. */
export function toProblem(error: unknown): DaemonProblem {
  const base = (status: number, code: string, detail: string, kind: Kind, extra: Partial<DaemonProblem> = {}): DaemonProblem => ({
    type: PROBLEM_TYPE_BASE + code.toLowerCase(),
    title: TITLES[status] ?? 'Error',
    status,
    detail,
    code,
    kind,
    ...extra,
  })
  if (error instanceof DaemonError) return base(error.status, error.code, error.message, 'daemon')
  // A 401 from the chat server is the daemon's session, not this request's token: a bad gateway.
  if (error instanceof ApiError) {
    const status = error.status >= 400 && error.status < 500 && error.status !== 401 ? error.status : 502
    return base(status, error.code, error.message, 'api', {upstream: error.status, data: {...error.problem}})
  }
  if (error instanceof NetworkError) return base(502, error.code, error.message, 'network', {data: {url: error.url, reason: error.reason}})
  if (error instanceof ProtocolError) return base(502, error.code, error.message, 'protocol', {data: {route: error.route, field: error.field, reason: error.reason}})
  if (error instanceof CryptoError) return base(statusOf(error.code), error.code, error.message, 'crypto')
  if (error instanceof FastChatError) return base(statusOf(error.code), error.code, error.message, 'client', {data: {...error.data}})
  return base(500, 'FC_INTERNAL', 'Something went wrong in the daemon; it wrote the details to its standard error.', 'internal')
}

const daemonProblem = z.object({
  status: z.number().int(),
  detail: z.string().default(''),
  code: z.string().regex(/^FC_[A-Z0-9_]+$/),
  kind: z.enum(['daemon', 'api', 'network', 'protocol', 'crypto', 'client', 'internal']).catch('client'),
  data: z.record(z.string(), z.unknown()).default({}),
  upstream: z.number().int().optional(),
})

const text = (value: unknown): string => (typeof value === 'string' ? value : '')

/** The error a daemon's problem answer stands for: the class it was thrown as, with its data. */
export function fromProblem(status: number, body: unknown): FastChatError | CryptoError {
  const parsed = daemonProblem.safeParse(body)
  if (!parsed.success) return new FastChatError('FC_DAEMON_UNAVAILABLE', `The daemon answered ${status} without a problem document.`, {status})
  const {code, detail, kind, data, upstream} = parsed.data
  switch (kind) {
    case 'api':
      return new ApiError(upstream ?? status, code, detail, upstreamProblem.parse(data))
    case 'network':
      return new NetworkError(text(data.url), text(data.reason))
    case 'protocol':
      return new ProtocolError(text(data.route), text(data.field), text(data.reason))
    case 'crypto':
      return new CryptoError(code as CryptoErrorCode, detail)
    default:
      return new FastChatError(code, detail, {...data, status})
  }
}
