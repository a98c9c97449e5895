import type {Logger} from 'pino'

/** What the re-check needs of delivery: who is parked where, the stream heads, and whom to wake. */
export interface RecheckParts {
  /** Per user with a parked listener, the lowest cursor one of them waits beyond. */
  parked(): Map<string, bigint>
  /** The last seq of each of these users' streams (one query). */
  heads(userIds: string[]): Promise<Map<string, bigint>>
  /** These users' streams moved past their parked cursors. */
  behind(userIds: string[]): void
}

/**
 * How long after reading the heads the re-check looks at the parked cursors
 * again, and wakes only the listeners still behind. Under load most heads
 * past a parked cursor are events on their way (committed, their hand-over
 * or push not yet arrived): waking those at once made a read of the stream
 * per such listener, ~90 a second on each server of the closed-loop bench
 * with streams, for news that arrived from memory a few milliseconds later.
 */
export const RECHECK_GRACE_MS = 50

/**
 * The fallback that makes a lost push cost latency, never a message: every
 * `intervalMs` one query reads the stream heads of the users with a poll or
 * stream parked on this server and wakes those with something new that they
 * have still not been handed RECHECK_GRACE_MS later. Its cost does not grow
 * with traffic (one indexed lookup per waiting user per interval), and it
 * needs nothing from the sending server, so it also covers a sender that
 * died between its commit and its push.
 */
export class Rechecker {
  private timer: NodeJS.Timeout | undefined
  private running = false

  constructor(
    private readonly parts: RecheckParts,
    private readonly intervalMs: number,
    private readonly logger: Logger,
    private readonly graceMs = RECHECK_GRACE_MS,
  ) {}

  start(): void {
    this.timer ??= setInterval(() => void this.tick(), this.intervalMs)
    this.timer.unref()
  }

  stop(): void {
    clearInterval(this.timer)
    this.timer = undefined
  }

  /** One round (exposed for tests). */
  async tick(): Promise<void> {
    if (this.running) return // a slow database must not pile up re-checks
    const parked = this.parts.parked()
    if (parked.size === 0) return
    this.running = true
    try {
      const heads = await this.parts.heads([...parked.keys()])
      const late = [...heads].filter(([id, last]) => last > parked.get(id)!)
      if (late.length === 0) return
      await new Promise((resolve) => setTimeout(resolve, this.graceMs))
      // Still parked below the head read: the news did not come (a listener that moved on, or answered, is not).
      const now = this.parts.parked()
      const behind = late.filter(([id, last]) => {
        const cursor = now.get(id)
        return cursor !== undefined && last > cursor
      })
      if (behind.length > 0) this.parts.behind(behind.map(([id]) => id))
    } catch (error) {
      this.logger.warn({err: error}, 're-check of parked listeners failed')
    } finally {
      this.running = false
    }
  }
}
