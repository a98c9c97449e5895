/**
 * Every error FastChat answers with is an AppError: a stable `code` (listed in
 * docs/errors.md), an HTTP status and a human title. Services throw these;
 * exactly one middleware (./problem.ts) turns them into RFC 9457 problems.
 */
export class AppError extends Error {
  readonly code: string
  readonly status: number
  readonly title: string
  /** Extra members of the problem document (e.g. `errors`, `retryAfter`). */
  readonly extensions: Record<string, unknown>
  readonly headers: Record<string, string>

  constructor(
    code: string,
    status: number,
    title: string,
    detail?: string,
    options: {extensions?: Record<string, unknown>; headers?: Record<string, string>; cause?: unknown} = {},
  ) {
    super(detail ?? title, options.cause === undefined ? undefined : {cause: options.cause})
    this.name = new.target.name
    this.code = code
    this.status = status
    this.title = title
    this.extensions = options.extensions ?? {}
    this.headers = options.headers ?? {}
  }
}

export interface FieldIssue {
  path: string
  message: string
}

export class ValidationError extends AppError {
  constructor(detail: string, issues: FieldIssue[] = []) {
    super('FC_VALIDATION', 400, 'Invalid request', detail, {extensions: {errors: issues}})
  }
}

export class MalformedJsonError extends AppError {
  constructor() {
    super('FC_MALFORMED_JSON', 400, 'Malformed JSON', 'The request body is not valid JSON.')
  }
}

export class UnsupportedMediaTypeError extends AppError {
  constructor(expected: string) {
    super('FC_UNSUPPORTED_MEDIA_TYPE', 415, 'Unsupported media type', `The request body must be ${expected}.`)
  }
}

export class PayloadTooLargeError extends AppError {
  constructor(limitBytes: number) {
    super('FC_PAYLOAD_TOO_LARGE', 413, 'Payload too large', `The request body exceeds the limit of ${limitBytes} bytes.`, {
      extensions: {limit: limitBytes},
    })
  }
}

export class UnauthorizedError extends AppError {
  constructor(detail = 'A valid bearer token is required.') {
    super('FC_UNAUTHORIZED', 401, 'Unauthorized', detail, {headers: {'WWW-Authenticate': 'Bearer'}})
  }
}

export class ForbiddenError extends AppError {
  constructor(detail = 'You are not allowed to do this.', code = 'FC_FORBIDDEN') {
    super(code, 403, 'Forbidden', detail)
  }
}

export class NotFoundError extends AppError {
  constructor(code = 'FC_NOT_FOUND', detail = 'No such resource.', extensions: Record<string, unknown> = {}) {
    super(code, 404, 'Not found', detail, {extensions})
  }
}

export class ConflictError extends AppError {
  constructor(code: string, detail: string, extensions: Record<string, unknown> = {}) {
    super(code, 409, 'Conflict', detail, {extensions})
  }
}

export class UnavailableError extends AppError {
  constructor(code: string, detail: string, retryAfterSeconds?: number) {
    super(code, 503, 'Service unavailable', detail, {
      headers: retryAfterSeconds === undefined ? {} : {'Retry-After': String(retryAfterSeconds)},
    })
  }
}

export class InternalError extends AppError {
  constructor() {
    super('FC_INTERNAL', 500, 'Internal server error', 'Something went wrong on our side. It has been logged.')
  }
}
