import {Router} from 'express'

import {bearerToken, currentUser, requireUser} from '../http/auth.js'
import type {Limiters} from '../http/rate-limit.js'
import {parse, requireJson} from '../http/validate.js'
import type {AccountService} from '../services/accounts.js'
import type {DeviceService} from '../services/devices.js'
import {approveLinkBody, createLinkBody, linkCode, uuid} from './schemas.js'

export function deviceRoutes(accounts: AccountService, devices: DeviceService, limiters: Limiters): Router {
  const router = Router()
  const auth = requireUser(accounts)

  // GET /v1/devices — the caller's live sessions
  router.get('/v1/devices', auth, async (_req, res) => {
    res.set('Cache-Control', 'no-store').json({devices: await devices.list(currentUser(res), res.locals.token as string)})
  })

  // DELETE /v1/devices/:id — ends that session on every server, as DELETE /v1/sessions/current does
  router.delete('/v1/devices/:id', auth, async (req, res) => {
    await devices.revoke(currentUser(res), parse(uuid, req.params.id, 'device id'))
    res.status(204).end()
  })

  // POST /v1/devices/links — a new device asks to be linked (no account yet)
  router.post('/v1/devices/links', limiters.deviceLinks, requireJson(), async (req, res) => {
    const body = parse(createLinkBody, req.body)
    res.status(201).set('Cache-Control', 'no-store').json(await devices.createLink(body))
  })

  // GET /v1/devices/links/:link — with the link's polling secret: the new device's poll; with a session: the approver reads the request
  router.get(
    '/v1/devices/links/:link',
    async (req, res, next) => {
      const code = parse(linkCode, req.params.link, 'link')
      const bearer = bearerToken(req.get('authorization'))
      if (bearer === undefined || !(await devices.isPollingSecret(code, bearer))) return next()
      await new Promise<void>((resolve, reject) => {
        Promise.resolve(limiters.deviceLinkPolls(req, res, (error?: unknown) => (error ? reject(error) : resolve()))).catch(reject)
      })
      res.set('Cache-Control', 'no-store').json(await devices.poll(code, bearer))
    },
    auth,
    limiters.deviceLinkLookups,
    async (req, res) => {
      res.set('Cache-Control', 'no-store').json(await devices.showLink(parse(linkCode, req.params.link, 'link')))
    },
  )

  // POST /v1/devices/links/:link/approve — the approving device hands over the ciphertext for the new device
  router.post('/v1/devices/links/:link/approve', auth, limiters.deviceLinkLookups, requireJson(), async (req, res) => {
    const code = parse(linkCode, req.params.link, 'link')
    const body = parse(approveLinkBody, req.body)
    await devices.approve(currentUser(res), code, body.ciphertext)
    res.status(204).end()
  })

  return router
}
