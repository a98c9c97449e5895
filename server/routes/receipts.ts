import {Router} from 'express'

import {currentUser, requireUser} from '../http/auth.js'
import type {Limiters} from '../http/rate-limit.js'
import {parse, requireJson} from '../http/validate.js'
import type {AccountService} from '../services/accounts.js'
import type {ReceiptService} from '../services/receipts.js'
import {postReceipts} from './schemas.js'

export function receiptRoutes(accounts: AccountService, receipts: ReceiptService, limiters: Limiters): Router {
  const router = Router()
  const auth = requireUser(accounts)

  // POST /v1/receipts — 204; each receipt appends one event to someone's stream, so each costs a send's point.
  router.post('/v1/receipts', auth, limiters.send, requireJson(), async (req, res) => {
    const body = parse(postReceipts, req.body)
    await limiters.send.charge(req, res, body.receipts.length)
    await receipts.read(currentUser(res), body.receipts)
    res.status(204).end()
  })

  return router
}
