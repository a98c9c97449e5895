import type {IncomingMessage, ServerResponse} from 'node:http'

import {AppError} from '../services/errors.js'

/**
 * Bounds on blob transfers (issue 12, hole 4): how many one user may run at
 * once, how long one may sit without a byte moving, and how long one may take
 * in all. A transfer past a deadline is cut; an upload is answered 408 first
 * when it still can be, and its transaction rolled back.
 */

export class TooManyTransfersError extends AppError<'FC_TOO_MANY_TRANSFERS'> {
  constructor(what: 'uploads' | 'downloads', limit: number) {
    super('FC_TOO_MANY_TRANSFERS', `You already have ${limit} ${what} in progress on this server; wait for one to finish.`, {
      retryAfterSeconds: 1,
      extensions: {limit, retryAfter: 1},
    })
  }
}

/** Answered with `Connection: close` (./problem.ts): the rest of the body is not read. */
export class TransferTimeoutError extends AppError<'FC_TRANSFER_TIMEOUT'> {
  constructor(reason: 'idle' | 'total', ms: number) {
    super(
      'FC_TRANSFER_TIMEOUT',
      reason === 'idle' ? `No byte of the body arrived for ${ms} ms.` : `The transfer took longer than ${ms} ms in all.`,
      {extensions: {timeoutMs: ms}},
    )
  }
}

export interface TransferDeadlines {
  /** No byte moves for this long: cut. */
  idleMs: number
  /** The whole transfer, however steady. */
  totalMs: number
}

export interface WatchedTransfer {
  /** Aborts with a TransferTimeoutError when a deadline passes. */
  signal: AbortSignal
  /** The transfer is over (or no longer needs watching): stops the timers. */
  done(): void
}

/**
 * Watches the deadlines of one transfer. Idleness is the socket's: its timer
 * restarts whenever the kernel takes bytes from us (a download) or gives us
 * some (an upload), so a slow but steady client is not idle, and one whose
 * socket buffers are full is. The listener goes on the request (an upload,
 * still being received) or the response (a download), so Node's own
 * "destroy on timeout" stays out of the way and we choose what happens.
 */
export function watchTransfer(req: IncomingMessage, res: ServerResponse, deadlines: TransferDeadlines, direction: 'upload' | 'download'): WatchedTransfer {
  const controller = new AbortController()
  const onIdle = () => controller.abort(new TransferTimeoutError('idle', deadlines.idleMs))
  const total = setTimeout(() => controller.abort(new TransferTimeoutError('total', deadlines.totalMs)), deadlines.totalMs)
  total.unref()
  const emitter = direction === 'upload' ? req : res
  emitter.on('timeout', onIdle)
  req.socket.setTimeout(deadlines.idleMs)
  let finished = false
  return {
    signal: controller.signal,
    done() {
      if (finished) return
      finished = true
      clearTimeout(total)
      emitter.off('timeout', onIdle)
      // Once the answer is out, Node has put the keep-alive timeout on the socket: leave it.
      if (!res.writableFinished) req.socket.setTimeout(0)
    },
  }
}

/**
 * The request body piece by piece, as read() hands it out (with
 * back-pressure: nothing is read ahead of the consumer), ending early by
 * throwing `signal.reason` when the signal aborts, even while waiting for a
 * client that sends nothing. The request is left readable, so a refusal can
 * still read and drop the rest of the body before answering.
 */
export async function* bodyPieces(req: IncomingMessage, signal: AbortSignal): AsyncGenerator<Buffer> {
  let wake: (() => void) | undefined
  const poke = () => wake?.()
  const events = ['readable', 'end', 'error', 'close'] as const
  for (const event of events) req.on(event, poke)
  signal.addEventListener('abort', poke)
  try {
    for (;;) {
      if (signal.aborted) throw signal.reason
      const piece = req.read() as Buffer | null
      if (piece !== null) {
        yield piece
        continue
      }
      if (req.readableEnded) return
      if (req.errored) throw req.errored
      if (req.destroyed) throw new Error('the client went away mid-upload')
      await new Promise<void>((resolve) => (wake = resolve))
      wake = undefined
    }
  } finally {
    for (const event of events) req.off(event, poke)
    signal.removeEventListener('abort', poke)
  }
}
