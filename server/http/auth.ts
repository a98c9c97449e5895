import type {RequestHandler, Response} from 'express'

import type {SessionUser} from '../../storage/repositories/session.repository.js'
import type {AccountService} from '../services/accounts.js'
import {UnauthorizedError} from '../services/errors.js'

/** A token is 43 base64url characters; anything much longer is not one of ours. */
const MAX_TOKEN_LENGTH = 256

export function bearerToken(header: string | undefined): string | undefined {
  const match = /^Bearer ([A-Za-z0-9_\-.~+/=]+)$/i.exec(header ?? '')
  return match && match[1]!.length <= MAX_TOKEN_LENGTH ? match[1] : undefined
}

/** Puts the caller in `res.locals.user`, or answers 401. */
export function requireUser(accounts: AccountService): RequestHandler {
  return async (req, res, next) => {
    const token = bearerToken(req.get('authorization'))
    if (!token) throw new UnauthorizedError()
    res.locals.user = await accounts.authenticate(token)
    res.locals.token = token
    next()
  }
}

export const currentUser = (res: Response): SessionUser => res.locals.user as SessionUser
