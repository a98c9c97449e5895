import {Router} from 'express'

import {currentUser, requireUser} from '../http/auth.js'
import {type EventsHandlerDeps, pollClient, serveEvents} from '../http/events.js'
import type {Limiters} from '../http/rate-limit.js'
import {PayloadTooLargeError} from '../http/errors.js'
import {parse, requireJson} from '../http/validate.js'
import type {AccountService} from '../services/accounts.js'
import type {MessageService} from '../services/messages.js'
import {clientIdHeader, eventsQuery, historyQuery, idempotencyKey, lastEventIdHeader, MAX_CIPHERTEXT_BYTES, peer, sendMessage, wantsEventStream} from './schemas.js'

export function messageRoutes(accounts: AccountService, messages: MessageService, events: EventsHandlerDeps, limiters: Limiters): Router {
  const router = Router()
  const auth = requireUser(accounts)

  // POST /v1/messages
  router.post('/v1/messages', auth, limiters.send, requireJson(), async (req, res) => {
    const ciphertext = (req.body as {ciphertext?: unknown} | undefined)?.ciphertext
    if (typeof ciphertext === 'string' && Buffer.byteLength(ciphertext) > MAX_CIPHERTEXT_BYTES) {
      throw new PayloadTooLargeError(MAX_CIPHERTEXT_BYTES)
    }
    const body = parse(sendMessage, req.body)
    const header = req.get('idempotency-key')
    const key = header === undefined ? undefined : parse(idempotencyKey, header, 'Idempotency-Key header')
    // A group send costs one point per member it reaches, counted before it is stored.
    const sent = await messages.send(currentUser(res), body, key, (events) => limiters.send.charge(req, res, events))
    res.status(201).json({id: sent.id, sentAt: sent.sentAt.toISOString()})
  })

  // GET /v1/events?since=C&timeout=MS&limit=N — a long-poll, or with Accept: text/event-stream a stream.
  // Requests the fast path (server/http/events.ts) passed on come here: validated in full, then served alike.
  router.get('/v1/events', auth, async (req, res) => {
    const query = parse(eventsQuery, req.query, 'query')
    const header = req.get('x-fastchat-client')
    const client = pollClient(res.locals.token as string, header === undefined ? undefined : parse(clientIdHeader, header, 'X-FastChat-Client header'))
    const stream = wantsEventStream(req.get('accept'))
    const lastEventId = req.get('last-event-id')
    const since = stream && lastEventId !== undefined ? parse(lastEventIdHeader, lastEventId, 'Last-Event-ID header') : query.since
    await serveEvents(events, res, {userId: currentUser(res).userId, since, timeoutMs: query.timeout, limit: query.limit, ack: query.ack, client, stream})
  })

  // GET /v1/conversations/:peer?before=&limit= (a username or a group id)
  router.get('/v1/conversations/:peer', auth, async (req, res) => {
    const target = parse(peer, req.params.peer, 'peer')
    const query = parse(historyQuery, req.query, 'query')
    res.json(await messages.history(currentUser(res), target, query.before, query.limit))
  })

  return router
}
