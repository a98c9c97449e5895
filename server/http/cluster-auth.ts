import {createHash, timingSafeEqual} from 'node:crypto'

import type {RequestHandler} from 'express'

import {UnauthorizedError} from '../services/errors.js'

const digest = (value: string) => createHash('sha256').update(value).digest()

/**
 * Guards the routes processes of one cluster use among themselves. The secret
 * comes as a bearer token; digests are compared in constant time so the
 * comparison leaks neither content nor length.
 */
export function requireClusterSecret(secret: string): RequestHandler {
  const expected = digest(secret)
  return (req, _res, next) => {
    const header = req.get('authorization') ?? ''
    const match = /^Bearer (.+)$/i.exec(header)
    if (!match || !timingSafeEqual(digest(match[1]!), expected)) {
      next(new UnauthorizedError('This route needs the cluster secret as a bearer token.'))
      return
    }
    next()
  }
}
