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
 * The fallback that makes a lost push cost latency, never a message: every
 * `intervalMs` one query reads the stream heads of the users with a poll or
 * stream parked on this server and wakes those with something new. Its cost
 * does not grow with traffic (one indexed lookup per waiting user per
 * interval), and it needs nothing from the sending server, so it also covers
 * a sender that died between its commit and its push.
 */
export class Rechecker {
  private timer: NodeJS.Timeout | undefined
  private running = false

  constructor(
    private readonly parts: RecheckParts,
    private readonly intervalMs: number,
    private readonly logger: Logger,
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
      const behind: string[] = []
      for (const [id, last] of heads) if (last > parked.get(id)!) behind.push(id)
      if (behind.length > 0) this.parts.behind(behind)
    } catch (error) {
      this.logger.warn({err: error}, 're-check of parked listeners failed')
    } finally {
      this.running = false
    }
  }
}
