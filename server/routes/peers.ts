import {Router} from 'express'

import {postPeerOffers} from '../../protocol/requests.js'
import {currentUser, requireUser} from '../http/auth.js'
import type {Limiters} from '../http/rate-limit.js'
import {parse, requireJson} from '../http/validate.js'
import type {AccountService} from '../services/accounts.js'
import type {ReceiptService} from '../services/receipts.js'

/** An IPv4 address in IPv6 form (a dual-stack listener's view of it) as plain IPv4. */
const plainAddress = (address: string) => address.replace(/^::ffff:(\d+\.\d+\.\d+\.\d+)$/, '$1')

/** The peer path's server side (docs/api.md, "Peer offers"): relaying offers, and telling a client the address it comes from. */
export function peerRoutes(accounts: AccountService, relay: ReceiptService, limiters: Limiters): Router {
  const router = Router()
  const auth = requireUser(accounts)

  // POST /v1/peer-offers — 204; each offer appends one `peer.offer` event to a contact's stream, a send's point each.
  router.post('/v1/peer-offers', auth, limiters.send, requireJson(), async (req, res) => {
    const body = parse(postPeerOffers, req.body)
    await limiters.send.charge(req, res, body.offers.length)
    await relay.offer(currentUser(res), body.offers)
    res.status(204).end()
  })

  // GET /v1/me/address — the address this request came from, as this server sees it (a peer endpoint's candidate).
  router.get('/v1/me/address', auth, (req, res) => {
    res.json({address: plainAddress(req.ip ?? req.socket.remoteAddress ?? '')})
  })

  return router
}
