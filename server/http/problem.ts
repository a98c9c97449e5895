import type {ErrorRequestHandler, RequestHandler} from 'express'
import type {Logger} from 'pino'

import {AppError, type ErrorStatus, UnavailableError, ValidationError} from '../services/errors.js'
import {InternalError, MalformedJsonError, PayloadTooLargeError, RouteNotFoundError, UnsupportedMediaTypeError} from './errors.js'

export const PROBLEM_CONTENT_TYPE = 'application/problem+json'
/** Problem `type` URIs resolve to the error reference, one anchor per code. */
const PROBLEM_TYPE_BASE = 'https://fastchat.dev/docs/errors#'

/** Titles by status, the same for every problem of a code (RFC 9457 section 3.1.3); a status new to the table must be given one. */
const TITLES: Readonly<Record<ErrorStatus, string>> = {
  400: 'Invalid request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not found',
  408: 'Request timeout',
  409: 'Conflict',
  410: 'Gone',
  413: 'Payload too large',
  415: 'Unsupported media type',
  429: 'Too many requests',
  431: 'Request header fields too large',
  500: 'Internal server error',
  503: 'Service unavailable',
}

export const problemTitle = (error: AppError): string => TITLES[error.status]

export function problemBody(error: AppError, instance?: string): Record<string, unknown> {
  return {
    type: PROBLEM_TYPE_BASE + error.code.toLowerCase(),
    title: problemTitle(error),
    status: error.status,
    detail: error.message,
    code: error.code,
    ...(instance ? {instance} : {}),
    ...error.extensions,
  }
}

/**
 * What a problem says in headers: when to retry, how to authenticate, and,
 * for an upload cut at its deadline, that the connection is done (the rest of
 * its body is not read).
 */
export function problemHeaders(error: AppError): Record<string, string> {
  return {
    ...(error.retryAfterSeconds === undefined ? {} : {'Retry-After': String(error.retryAfterSeconds)}),
    ...(error.code === 'FC_UNAUTHORIZED' ? {'WWW-Authenticate': 'Bearer'} : {}),
    ...(error.code === 'FC_TRANSFER_TIMEOUT' ? {Connection: 'close'} : {}),
  }
}

/**
 * Postgres being restarted, unreachable, failing over or too slow is not a
 * bug in the request: the client should retry. SQLSTATE classes 08
 * (connection) and 57P (operator intervention), a statement or lock timeout
 * (57014, 55P03), a server that turned read-only under us (25006: a standby
 * until the failover is over), and from the driver: socket errors and a
 * query that got no answer in time.
 */
const UNAVAILABLE_CODES = new Set(['57014', '55P03', '25006', 'ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH'])

function isDatabaseUnavailable(error: unknown): boolean {
  const seen = new Set<unknown>()
  let current: unknown = error
  while (typeof current === 'object' && current !== null && !seen.has(current)) {
    seen.add(current)
    const {code, message} = current as {code?: unknown; message?: unknown}
    if (typeof code === 'string' && (/^08/.test(code) || /^57P0[1-3]$/.test(code) || UNAVAILABLE_CODES.has(code))) return true
    if (typeof message === 'string' && /Connection terminated|timeout exceeded when trying to connect|^Query read timeout$/.test(message)) return true
    // TypeORM's answer to a query on a transaction whose connection just died.
    if ((current as {name?: unknown}).name === 'QueryRunnerProviderAlreadyReleasedError') return true
    current = (current as {driverError?: unknown; cause?: unknown}).driverError ?? (current as {cause?: unknown}).cause
  }
  return false
}

/** Maps what body-parser and friends throw onto our error classes. */
function fromFrameworkError(error: unknown): AppError | undefined {
  if (error instanceof AppError) return error
  if (typeof error !== 'object' || error === null) return undefined
  const {type, status, limit} = error as {type?: string; status?: number; limit?: number}
  switch (type) {
    case 'entity.parse.failed':
      return new MalformedJsonError()
    case 'entity.too.large':
      return new PayloadTooLargeError(limit ?? 0)
    case 'encoding.unsupported':
    case 'charset.unsupported':
      return new UnsupportedMediaTypeError('UTF-8 encoded')
    case 'request.aborted':
      return new ValidationError('The request was aborted before its body arrived.')
    case 'request.size.invalid':
      return new ValidationError('The request body is shorter than its Content-Length.')
    default:
      break
  }
  // Other http-errors with a client status (e.g. a malformed URI in path params).
  if (typeof status === 'number' && status >= 400 && status < 500) {
    return new ValidationError('The request could not be understood.')
  }
  return undefined
}

export function notFoundHandler(): RequestHandler {
  return (req, _res, next) => next(new RouteNotFoundError(req.method, req.path))
}

/**
 * The problem an error is answered with: our own errors as they are, the
 * framework's mapped, a database outage as 503; anything else is a bug,
 * logged in full and answered 500 with nothing of it shown.
 */
export function toProblem(error: unknown, logger: Logger, where: {method: string; path: string}): AppError {
  let problem = fromFrameworkError(error)
  if (!problem && isDatabaseUnavailable(error)) {
    logger.warn({...where, reason: (error as Error).message}, 'database unavailable')
    problem = new UnavailableError('FC_DATABASE_UNAVAILABLE', 'The database is unavailable; retry shortly.', 1)
  }
  if (!problem) {
    logger.error({err: error, ...where}, 'unhandled error')
    problem = new InternalError()
  }
  return problem
}

/** The one place where errors become HTTP responses (the poll fast path uses toProblem too). */
export function problemHandler(logger: Logger): ErrorRequestHandler {
  return (error, req, res, next) => {
    if (res.headersSent) {
      next(error)
      return
    }
    const problem = toProblem(error, logger, {method: req.method, path: req.path})
    for (const [name, value] of Object.entries(problemHeaders(problem))) res.setHeader(name, value)
    res.status(problem.status).type(PROBLEM_CONTENT_TYPE).send(JSON.stringify(problemBody(problem, req.originalUrl.split('?')[0])))
  }
}
