import {Router} from 'express'

import {presenceQuery, presenceSetting} from '../../protocol/presence.js'
import {currentUser, requireUser} from '../http/auth.js'
import type {Limiters} from '../http/rate-limit.js'
import {parse, requireJson} from '../http/validate.js'
import type {AccountService} from '../services/accounts.js'
import type {PresenceService} from '../services/presence.js'

export function presenceRoutes(accounts: AccountService, presence: PresenceService, limiters: Limiters): Router {
  const router = Router()
  const auth = requireUser(accounts)

  // GET /v1/presence?users=alice,bob — the presence of up to 200 people, as the caller may see it.
  // Counted against the account's send limit: each name costs a few bounded index reads.
  router.get('/v1/presence', auth, limiters.send, async (req, res) => {
    const query = parse(presenceQuery, req.query, 'query')
    res.set('Cache-Control', 'no-store').json({users: await presence.lookup(currentUser(res), query.users)})
  })

  // GET /v1/me/presence — my setting, and what the people I talk with see
  router.get('/v1/me/presence', auth, async (_req, res) => {
    res.set('Cache-Control', 'no-store').json(await presence.own(currentUser(res)))
  })

  // PUT /v1/me/presence — {visible}: show or hide my presence (hidden shows to nobody)
  router.put('/v1/me/presence', auth, limiters.send, requireJson(), async (req, res) => {
    const body = parse(presenceSetting, req.body)
    res.json(await presence.setVisible(currentUser(res), body.visible))
  })

  return router
}
