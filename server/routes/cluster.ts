import {Router} from 'express'
import {z} from 'zod'

import type {DeliveryHub} from '../delivery/hub.js'
import {requireClusterSecret} from '../http/cluster-auth.js'
import {parse, requireJson} from '../http/validate.js'

const wakeBody = z.strictObject({
  users: z.array(z.string().regex(/^\d{1,19}$/, 'must be a user id')).min(1).max(5_000),
})

/** Routes peer chat servers call on each other, guarded by the cluster secret. */
export function clusterRoutes(hub: DeliveryHub, clusterSecret: string): Router {
  const router = Router()

  // POST /v1/cluster/wake — a peer committed events for these users: wake their polls here.
  router.post('/v1/cluster/wake', requireClusterSecret(clusterSecret), requireJson(), (req, res) => {
    hub.notify(parse(wakeBody, req.body).users)
    res.status(204).end()
  })

  return router
}
