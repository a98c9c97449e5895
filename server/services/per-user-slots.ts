import type {Cancellation} from '../delivery/cancel.js'

/**
 * At most `perUser` of something in flight per user on this server: blob
 * transfers (refused beyond it) or event reads (queued beyond it, in order).
 * Counters live in this process only, like the rate limits: a user spreading
 * work over N servers gets N times the allowance.
 */
export class PerUserSlots {
  private readonly users = new Map<string, {running: number; queue: (() => void)[]}>()

  constructor(readonly perUser: number) {}

  /** A slot now, or undefined when the user already holds every one. */
  tryAcquire(userId: string): (() => void) | undefined {
    const entry = this.users.get(userId)
    if (entry && entry.running >= this.perUser) return undefined
    if (entry) entry.running++
    else this.users.set(userId, {running: 1, queue: []})
    return this.releaser(userId)
  }

  /** A slot as soon as one is free (first come, first served); undefined if `signal` aborts first. */
  async acquire(userId: string, signal?: Cancellation): Promise<(() => void) | undefined> {
    const now = this.tryAcquire(userId)
    if (now || signal?.aborted) return now
    const entry = this.users.get(userId)!
    return new Promise((resolve) => {
      const onAbort = () => {
        const at = entry.queue.indexOf(grant)
        if (at >= 0) entry.queue.splice(at, 1)
        resolve(undefined)
      }
      // Called by a release with its slot handed over: `running` stays as it is.
      const grant = () => {
        signal?.removeEventListener('abort', onAbort)
        resolve(this.releaser(userId))
      }
      entry.queue.push(grant)
      signal?.addEventListener('abort', onAbort, {once: true})
    })
  }

  /** Slots held by this user now. */
  held(userId: string): number {
    return this.users.get(userId)?.running ?? 0
  }

  private releaser(userId: string): () => void {
    let released = false
    return () => {
      if (released) return
      released = true
      const entry = this.users.get(userId)!
      const next = entry.queue.shift()
      if (next) return next()
      if (--entry.running === 0) this.users.delete(userId)
    }
  }
}
