import {Router} from 'express'

import {currentUser, requireUser} from '../http/auth.js'
import type {Limiters} from '../http/rate-limit.js'
import {parse, requireJson} from '../http/validate.js'
import type {AccountService} from '../services/accounts.js'
import type {BlockService} from '../services/blocks.js'
import {blockBody, username} from './schemas.js'

export function blockRoutes(accounts: AccountService, blocks: BlockService, limiters: Limiters): Router {
  const router = Router()
  const auth = requireUser(accounts)

  // POST /v1/blocks — 201 when new, 200 when the user was already blocked
  router.post('/v1/blocks', auth, limiters.send, requireJson(), async (req, res) => {
    const body = parse(blockBody, req.body)
    const {created, ...block} = await blocks.block(currentUser(res), body.username)
    res.status(created ? 201 : 200).json(block)
  })

  // GET /v1/blocks
  router.get('/v1/blocks', auth, async (_req, res) => {
    res.set('Cache-Control', 'no-store').json({blocks: await blocks.list(currentUser(res))})
  })

  // DELETE /v1/blocks/:username — 204 whether or not the user was blocked
  router.delete('/v1/blocks/:username', auth, limiters.send, async (req, res) => {
    await blocks.unblock(currentUser(res), parse(username, req.params.username, 'username'))
    res.status(204).end()
  })

  return router
}
