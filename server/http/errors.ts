import {AppError} from '../services/errors.js'

/**
 * The errors of HTTP itself, found before or instead of any service: a body
 * that is not what the route takes, a route that does not exist, a bug. The
 * domain errors live beside the services (../services/errors.ts); ./problem.ts
 * turns both into problems.
 */

export class MalformedJsonError extends AppError<'FC_MALFORMED_JSON'> {
  constructor() {
    super('FC_MALFORMED_JSON', 'The request body is not valid JSON.')
  }
}

export class UnsupportedMediaTypeError extends AppError<'FC_UNSUPPORTED_MEDIA_TYPE'> {
  constructor(expected: string) {
    super('FC_UNSUPPORTED_MEDIA_TYPE', `The request body must be ${expected}.`)
  }
}

export class PayloadTooLargeError extends AppError<'FC_PAYLOAD_TOO_LARGE'> {
  constructor(limitBytes: number) {
    super('FC_PAYLOAD_TOO_LARGE', `The request body exceeds the limit of ${limitBytes} bytes.`, {extensions: {limit: limitBytes}})
  }
}

export class RouteNotFoundError extends AppError<'FC_ROUTE_NOT_FOUND'> {
  constructor(method: string, path: string) {
    super('FC_ROUTE_NOT_FOUND', `No route for ${method} ${path}.`)
  }
}

export class InternalError extends AppError<'FC_INTERNAL'> {
  constructor() {
    super('FC_INTERNAL', 'Something went wrong on our side. It has been logged.')
  }
}
