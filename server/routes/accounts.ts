import {Router} from 'express'

import {currentUser, requireUser} from '../http/auth.js'
import type {Limiters} from '../http/rate-limit.js'
import {parse, requireJson} from '../http/validate.js'
import type {AccountService} from '../services/accounts.js'
import {UnauthorizedError} from '../services/errors.js'
import {registerBody, sessionBody, username} from './schemas.js'

export function accountRoutes(accounts: AccountService, limiters: Limiters): Router {
  const router = Router()
  const auth = requireUser(accounts)

  // POST /v1/users
  router.post('/v1/users', limiters.register, requireJson(), async (req, res) => {
    const body = parse(registerBody, req.body)
    res.status(201).json(await accounts.register(body))
  })

  // GET /v1/users/:username
  router.get('/v1/users/:username', auth, async (req, res) => {
    const user = await accounts.find(parse(username, req.params.username, 'username'))
    res.json({username: user.username, publicKey: user.publicKey, fingerprint: user.fingerprint})
  })

  // POST /v1/sessions — the lockout is checked before the password (a locked pair costs no scrypt), the outcome recorded after.
  router.post('/v1/sessions', requireJson(), async (req, res) => {
    const body = parse(sessionBody, req.body)
    await limiters.login.check(req, body.username)
    const session = await accounts.login(body.username, body.password, body.device).catch(async (error: unknown) => {
      if (error instanceof UnauthorizedError) await limiters.login.failed(req, body.username)
      throw error
    })
    await limiters.login.succeeded(req, body.username)
    res.status(201).set('Cache-Control', 'no-store').json({token: session.token, expiresAt: session.expiresAt.toISOString(), username: session.username, device: session.device})
  })

  // DELETE /v1/sessions/current
  router.delete('/v1/sessions/current', auth, async (_req, res) => {
    await accounts.logout(res.locals.token as string)
    res.status(204).end()
  })

  // DELETE /v1/sessions — every session of the caller, on every server ("log out everywhere")
  router.delete('/v1/sessions', auth, async (_req, res) => {
    await accounts.logoutEverywhere(currentUser(res))
    res.status(204).end()
  })

  // GET /v1/me
  router.get('/v1/me', auth, (_req, res) => {
    res.json({username: currentUser(res).username})
  })

  return router
}
