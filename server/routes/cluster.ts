import {Router} from 'express'
import {z} from 'zod'

import {historyMessage} from '../../protocol/events.js'
import {username, uuid} from '../../protocol/primitives.js'
import {MAX_RECEIPT_CIPHERTEXT_BYTES} from '../../protocol/requests.js'
import {RECEIPT_IDS_PER_EVENT} from '../delivery/acks.js'
import {type EventAppender, READ_RECEIPTS_PER_EVENT} from '../services/receipts.js'
import type {MessageKind} from '../../storage/entities/message.js'
import type {Delivery} from '../delivery/delivery.js'
import type {WireEvent} from '../delivery/listener.js'
import {type CommittedMessage, EVENT_ENVELOPE_BYTES} from '../delivery/views.js'
import {requireClusterSecret} from '../http/cluster-auth.js'
import {parse, requireJson} from '../http/validate.js'

const userId = z.string().regex(/^\d{1,19}$/, 'must be a user id')

/** What PeerPush (server/delivery/peers.ts) sends: users to wake, and committed messages with each recipient's seq. */
const wakeBody = z
  .strictObject({
    users: z.array(userId).max(5_000),
    messages: z
      .array(z.strictObject({view: historyMessage, to: z.array(z.tuple([userId, z.string().regex(/^\d{1,19}$/, 'must be a seq')])).min(1).max(5_000)}))
      .max(500)
      .optional(),
    /** Lazy events (receipts, presence): recipient, seq, type, the event's wire JSON (made by the peer, as a read here would). */
    lazy: z
      .array(z.tuple([userId, z.string().regex(/^\d{1,19}$/, 'must be a seq'), z.string().regex(/^[a-z][a-z0-9_.-]{0,63}$/), z.string().max(256 * 1024)]))
      .max(500)
      .optional(),
  })
  .refine((body) => body.users.length > 0 || (body.messages?.length ?? 0) > 0 || (body.lazy?.length ?? 0) > 0, 'must wake someone')

/** What HomeAppender sends: receipts' events for users who listen here, to append to their streams. */
const eventsBody = z.strictObject({
  events: z
    .array(
      z.discriminatedUnion('type', [
        z.strictObject({
          recipientId: userId,
          type: z.literal('receipt.read'),
          payload: z.strictObject({receipts: z.array(z.strictObject({from: username, ciphertext: z.string().max(MAX_RECEIPT_CIPHERTEXT_BYTES)})).min(1).max(READ_RECEIPTS_PER_EVENT)}),
        }),
        z.strictObject({
          recipientId: userId,
          type: z.literal('receipt.delivered'),
          payload: z.strictObject({receipts: z.array(z.strictObject({by: username, messages: z.array(uuid).max(RECEIPT_IDS_PER_EVENT)})).min(1).max(RECEIPT_IDS_PER_EVENT)}),
        }),
      ]),
    )
    .min(1)
    .max(500),
})

/** Routes peer chat servers call on each other, guarded by the cluster secret; `appender` gathers the receipts' events peers hand over (ReceiptGatherer). */
export function clusterRoutes(delivery: Delivery, clusterSecret: string, appender: EventAppender): Router {
  const router = Router()

  // POST /v1/cluster/events — a peer's receipts for users who listen here: gathered with this server's own for
  // their recipients' windows, appended and delivered here (ReceiptGatherer); 204 once committed.
  router.post('/v1/cluster/events', requireClusterSecret(clusterSecret), requireJson(), async (req, res) => {
    const body = parse(eventsBody, req.body)
    await appender.appendEvents(body.events)
    res.status(204).end()
  })

  // POST /v1/cluster/wake — a peer committed events for these users: hand them to (or wake) their listeners here.
  router.post('/v1/cluster/wake', requireClusterSecret(clusterSecret), requireJson(), (req, res) => {
    const body = parse(wakeBody, req.body)
    const messages: CommittedMessage[] = (body.messages ?? []).map(({view, to}) => ({
      view: {...view, kind: view.kind as MessageKind, to: view.to.group ? {group: view.to.group} : {user: view.to.user!}},
      to: to.map(([recipientId, seq]) => ({recipientId, seq: BigInt(seq)})),
    }))
    const lazy = new Map<string, WireEvent[]>()
    for (const [recipientId, seq, type, json] of body.lazy ?? []) {
      let list = lazy.get(recipientId)
      if (!list) lazy.set(recipientId, (list = []))
      list.push({seq: BigInt(seq), type, json, bytes: EVENT_ENVELOPE_BYTES + json.length})
    }
    delivery.fromPeer(body.users, messages, lazy)
    res.status(204).end()
  })

  return router
}
