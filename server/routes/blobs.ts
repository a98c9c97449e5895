import {Readable} from 'node:stream'
import {pipeline} from 'node:stream/promises'

import {type Request, Router} from 'express'

import {type BlobRepository, BlobTooLargeError} from '../../storage/repositories/blob.repository.js'
import {currentUser, requireUser} from '../http/auth.js'
import type {Limiters} from '../http/rate-limit.js'
import {NotFoundError, PayloadTooLargeError, UnsupportedMediaTypeError} from '../http/errors.js'
import {parse} from '../http/validate.js'
import type {AccountService} from '../services/accounts.js'
import {uuid} from './schemas.js'

/** How long a refused upload may go on sending before its connection is cut. */
const LINGER_MS = 5_000

/**
 * After a 413 the client is usually still sending. Closing at once would make
 * it see EPIPE or a reset instead of our answer, so read and drop the rest of
 * the body ("lingering close"), but for LINGER_MS at most.
 */
function discardRest(req: Request): void {
  const timer = setTimeout(() => req.destroy(), LINGER_MS)
  timer.unref()
  req.once('end', () => clearTimeout(timer))
  req.once('close', () => clearTimeout(timer))
  req.resume()
}

export function blobRoutes(accounts: AccountService, blobs: BlobRepository, limitBytes: number, limiters: Limiters): Router {
  const router = Router()
  const auth = requireUser(accounts)

  // POST /v1/blobs — the client's OpenPGP-encrypted file, streamed into Postgres.
  router.post('/v1/blobs', auth, limiters.send, async (req, res) => {
    if (!req.is('application/octet-stream')) throw new UnsupportedMediaTypeError('application/octet-stream')
    const declared = Number(req.get('content-length') ?? Number.NaN)
    try {
      // Refuse before reading a byte when the client says how much is coming.
      if (declared > limitBytes) throw new BlobTooLargeError()
      // Leaving the loop early must not destroy the request (see discardRest).
      const stored = await blobs.store(currentUser(res).userId, req.iterator({destroyOnReturn: false}), limitBytes)
      res.status(201).json({blob: stored.id, size: stored.size})
    } catch (error) {
      if (!(error instanceof BlobTooLargeError)) throw error
      discardRest(req)
      throw new PayloadTooLargeError(limitBytes)
    }
  })

  // GET /v1/blobs/:blob — 404, not 403, for blobs you may not read: ids reveal nothing.
  router.get('/v1/blobs/:blob', auth, async (req, res) => {
    const id = parse(uuid, req.params.blob, 'blob id')
    const size = await blobs.readableSize(id, currentUser(res).userId)
    if (size === undefined) throw new NotFoundError('FC_BLOB_NOT_FOUND', `No blob ${id}.`)
    res.status(200).set({'Content-Type': 'application/octet-stream', 'Content-Length': String(size), 'Cache-Control': 'private, no-store'})
    // Headers are out: a failure from here can only cut the connection (the length will not match).
    await pipeline(Readable.from(blobs.chunks(id)), res).catch(() => res.destroy())
  })

  return router
}
