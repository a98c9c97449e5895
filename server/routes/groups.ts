import express, {type Request, type Response, Router} from 'express'

import {currentUser, requireUser} from '../http/auth.js'
import type {Limiters} from '../http/rate-limit.js'
import {parse, requireJson} from '../http/validate.js'
import type {AccountService} from '../services/accounts.js'
import type {GroupService} from '../services/groups.js'
import {addMember, createGroup, epochParam, putKeys, setRole, username, uuid} from './schemas.js'

/**
 * A key set wraps the group key once per member (about 1 KiB each), so its
 * route takes a larger body than the rest of the API.
 */
export const KEY_SET_LIMIT_BYTES = 4 * 1024 * 1024
export const isKeySetUpload = (method: string, path: string) => method === 'PUT' && /^\/v1\/groups\/[^/]+\/keys\/[^/]+$/.test(path)

export function groupRoutes(accounts: AccountService, groups: GroupService, limiters: Limiters): Router {
  const router = Router()
  const auth = requireUser(accounts)
  const groupId = (value: unknown) => parse(uuid, value, 'group id')
  // A change appends an event to every member's stream: that many points against the send limit.
  const charge = (req: Request, res: Response) => (events: number) => limiters.send.charge(req, res, events)

  // POST /v1/groups
  router.post('/v1/groups', auth, limiters.send, requireJson(), async (req, res) => {
    const body = parse(createGroup, req.body)
    res.status(201).json(await groups.create(currentUser(res), body.name, body.members, charge(req, res)))
  })

  // GET /v1/groups
  router.get('/v1/groups', auth, async (_req, res) => {
    res.json({groups: await groups.list(currentUser(res))})
  })

  // GET /v1/groups/invitations — before /v1/groups/:id, which would take "invitations" for an id
  router.get('/v1/groups/invitations', auth, async (_req, res) => {
    res.json({invitations: await groups.invitations(currentUser(res))})
  })

  // POST /v1/groups/:id/join
  router.post('/v1/groups/:id/join', auth, limiters.send, async (req, res) => {
    res.json(await groups.join(currentUser(res), groupId(req.params.id), charge(req, res)))
  })

  // POST /v1/groups/:id/decline
  router.post('/v1/groups/:id/decline', auth, limiters.send, async (req, res) => {
    await groups.decline(currentUser(res), groupId(req.params.id))
    res.status(204).end()
  })

  // GET /v1/groups/:id
  router.get('/v1/groups/:id', auth, async (req, res) => {
    res.json(await groups.get(currentUser(res), groupId(req.params.id)))
  })

  // POST /v1/groups/:id/members
  router.post('/v1/groups/:id/members', auth, limiters.send, requireJson(), async (req, res) => {
    const id = groupId(req.params.id)
    const body = parse(addMember, req.body)
    res.status(201).json(await groups.addMember(currentUser(res), id, body.username, charge(req, res)))
  })

  // PATCH /v1/groups/:id/members/:username
  router.patch('/v1/groups/:id/members/:username', auth, limiters.send, requireJson(), async (req, res) => {
    const id = groupId(req.params.id)
    const member = parse(username, req.params.username, 'username')
    const body = parse(setRole, req.body)
    res.json(await groups.setRole(currentUser(res), id, member, body.role, charge(req, res)))
  })

  // DELETE /v1/groups/:id/members/:username
  router.delete('/v1/groups/:id/members/:username', auth, limiters.send, async (req, res) => {
    const id = groupId(req.params.id)
    const member = parse(username, req.params.username, 'username')
    await groups.removeMember(currentUser(res), id, member, charge(req, res))
    res.status(204).end()
  })

  // POST /v1/groups/:id/epochs — a new epoch, same members (admins only)
  router.post('/v1/groups/:id/epochs', auth, limiters.send, async (req, res) => {
    res.status(201).json(await groups.rekey(currentUser(res), groupId(req.params.id), charge(req, res)))
  })

  // PUT /v1/groups/:id/keys/:epoch
  router.put('/v1/groups/:id/keys/:epoch', auth, limiters.send, requireJson(), express.json({limit: KEY_SET_LIMIT_BYTES}), async (req, res) => {
    const id = groupId(req.params.id)
    const epoch = parse(epochParam, req.params.epoch, 'epoch')
    const body = parse(putKeys, req.body)
    await groups.putKeys(currentUser(res), id, epoch, body.keys, charge(req, res))
    res.status(204).end()
  })

  // GET /v1/groups/:id/keys/:epoch
  router.get('/v1/groups/:id/keys/:epoch', auth, async (req, res) => {
    const id = groupId(req.params.id)
    const epoch = parse(epochParam, req.params.epoch, 'epoch')
    res.json(await groups.getKey(currentUser(res), id, epoch))
  })

  return router
}
