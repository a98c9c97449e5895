import {Readable} from 'node:stream'
import {pipeline} from 'node:stream/promises'

import {type Request, Router} from 'express'

import {type BlobRepository, BlobTooLargeError, StorageQuotaError, UploadPoolBusyError} from '../../storage/repositories/blob.repository.js'
import {currentUser, requireUser} from '../http/auth.js'
import type {Limiters} from '../http/rate-limit.js'
import {PayloadTooLargeError, UnsupportedMediaTypeError} from '../http/errors.js'
import {bodyPieces, TooManyTransfersError, type TransferDeadlines, TransferTimeoutError, watchTransfer, type WatchedTransfer} from '../http/transfers.js'
import {parse} from '../http/validate.js'
import type {AccountService} from '../services/accounts.js'
import {type AppError, BlobError, StorageQuotaExceededError, UnavailableError} from '../services/errors.js'
import {PerUserSlots} from '../services/per-user-slots.js'
import {uuid} from './schemas.js'

/** How long a refused upload may go on sending before its connection is cut. */
const LINGER_MS = 5_000
/** Bytes a download reads ahead of what the client took: one piece, on top of the page in hand. */
const DOWNLOAD_READ_AHEAD_BYTES = 64 * 1024

export interface BlobRouteConfig {
  /** Largest file accepted. */
  limitBytes: number
  /** Per-user storage quota. */
  quotaBytes: number
  uploadsPerUser: number
  downloadsPerUser: number
  deadlines: TransferDeadlines
}

/**
 * After a refusal the client is usually still sending. Closing at once would
 * make it see EPIPE or a reset instead of our answer, so read and drop the
 * rest of the body ("lingering close"), but for LINGER_MS at most.
 */
function discardRest(req: Request): void {
  const timer = setTimeout(() => req.destroy(), LINGER_MS)
  timer.unref()
  req.once('end', () => clearTimeout(timer))
  req.once('close', () => clearTimeout(timer))
  req.resume()
}

/** What an upload that did not go through answers, or undefined for an error that is not a refusal. */
function refusal(error: unknown, config: BlobRouteConfig): AppError | undefined {
  if (error instanceof BlobTooLargeError) return new PayloadTooLargeError(config.limitBytes)
  if (error instanceof StorageQuotaError) return new StorageQuotaExceededError(error.quotaBytes, error.usageBytes)
  if (error instanceof UploadPoolBusyError) return new UnavailableError('FC_UPLOADS_BUSY', 'Every upload slot of this server is busy; retry shortly.', 1)
  if (error instanceof TooManyTransfersError || error instanceof TransferTimeoutError) return error
  return undefined
}

export function blobRoutes(accounts: AccountService, blobs: BlobRepository, config: BlobRouteConfig, limiters: Limiters): Router {
  const router = Router()
  const auth = requireUser(accounts)
  const uploads = new PerUserSlots(config.uploadsPerUser)
  const downloads = new PerUserSlots(config.downloadsPerUser)

  // POST /v1/blobs — the client's OpenPGP-encrypted file, streamed into Postgres.
  router.post('/v1/blobs', auth, limiters.send, async (req, res) => {
    if (!req.is('application/octet-stream')) throw new UnsupportedMediaTypeError('application/octet-stream')
    const header = req.get('content-length')
    const declared = header === undefined ? undefined : Number(header)
    const {userId} = currentUser(res)
    let release: (() => void) | undefined
    let watch: WatchedTransfer | undefined
    try {
      // Refuse before reading a byte when the client says how much is coming.
      if (declared !== undefined && declared > config.limitBytes) throw new BlobTooLargeError()
      release = uploads.tryAcquire(userId)
      if (!release) throw new TooManyTransfersError('uploads', config.uploadsPerUser)
      watch = watchTransfer(req, res, config.deadlines, 'upload')
      const stored = await blobs.store(userId, bodyPieces(req, watch.signal), {sizeBytes: config.limitBytes, quotaBytes: config.quotaBytes, declaredBytes: declared})
      watch.done()
      res.status(201).json({blob: stored.id, size: stored.size})
    } catch (error) {
      watch?.done()
      const answer = refusal(error, config)
      if (!answer) throw error
      // A client that stopped sending gets its answer and the connection closes (Connection: close).
      if (!(answer instanceof TransferTimeoutError) && !req.complete) discardRest(req)
      throw answer
    } finally {
      release?.()
    }
  })

  // GET /v1/blobs/:blob — 404, not 403, for blobs you may not read: ids reveal nothing.
  router.get('/v1/blobs/:blob', auth, async (req, res) => {
    const id = parse(uuid, req.params.blob, 'blob id')
    const {userId} = currentUser(res)
    const release = downloads.tryAcquire(userId)
    if (!release) throw new TooManyTransfersError('downloads', config.downloadsPerUser)
    try {
      const size = await blobs.readableSize(id, userId)
      if (size === undefined) throw new BlobError('FC_BLOB_NOT_FOUND', `No blob ${id}.`)
      const pieces = blobs.chunks(id)
      // The first page before the headers: a database failure here is still a clear 503.
      const first = await pieces.next()
      res.status(200).set({'Content-Type': 'application/octet-stream', 'Content-Length': String(size), 'Cache-Control': 'private, no-store'})
      // Headers are out: a failure or a deadline from here can only cut the connection.
      const watch = watchTransfer(req, res, config.deadlines, 'download')
      watch.signal.addEventListener('abort', () => res.destroy())
      async function* exactly(): AsyncGenerator<Buffer> {
        let sent = 0
        if (!first.done) {
          sent += first.value.length
          yield first.value
        }
        for await (const piece of pieces) {
          sent += piece.length
          yield piece
        }
        if (sent !== size) throw new Error(`blob ${id} ended after ${sent} of ${size} bytes`) // deleted half-way
      }
      await pipeline(Readable.from(exactly(), {objectMode: false, highWaterMark: DOWNLOAD_READ_AHEAD_BYTES}), res)
        .catch(() => res.destroy())
        .finally(() => watch.done())
    } finally {
      release()
    }
  })

  return router
}
