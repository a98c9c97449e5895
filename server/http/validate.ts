import type {RequestHandler} from 'express'
import {z} from 'zod'

import {ValidationError} from '../services/errors.js'
import {UnsupportedMediaTypeError} from './errors.js'

/** Parses `value` with `schema` or throws a 400 problem listing each bad field. */
export function parse<S extends z.ZodType>(schema: S, value: unknown, what = 'request body'): z.output<S> {
  const result = schema.safeParse(value)
  if (result.success) return result.data
  const issues = result.error.issues.map((issue) => ({
    path: issue.path.map(String).join('.') || '(root)',
    message: issue.message,
  }))
  const first = issues[0]
  throw new ValidationError(`Invalid ${what}: ${first ? `${first.path}: ${first.message}` : 'malformed'}.`, issues)
}

/**
 * Routes that take a JSON body refuse any other content type with 415 before
 * the body is read, so a client sending form data gets told why.
 */
export function requireJson(): RequestHandler {
  return (req, _res, next) => {
    if (!req.is('application/json')) {
      next(new UnsupportedMediaTypeError('application/json'))
      return
    }
    next()
  }
}
