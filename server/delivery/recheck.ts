import type {Logger} from 'pino'
import type {DataSource} from 'typeorm'

import type {DeliveryHub} from './hub.js'

/**
 * The fallback that makes a lost wake-up cost latency, never a message: every
 * `intervalMs` one query reads the stream heads of the users with a poll
 * parked on this server and wakes those with something new. Its cost does not
 * grow with traffic (one indexed lookup per waiting user per interval), and
 * it needs nothing from the sending server, so it also covers a sender that
 * died between its commit and its push.
 */
export class Rechecker {
  private timer: NodeJS.Timeout | undefined
  private running = false

  constructor(
    private readonly db: DataSource,
    private readonly hub: DeliveryHub,
    private readonly intervalMs: number,
    private readonly logger: Logger,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.tick(), this.intervalMs)
    this.timer.unref()
  }

  stop(): void {
    clearInterval(this.timer)
  }

  private async tick(): Promise<void> {
    if (this.running) return // a slow database must not pile up re-checks
    const parked = this.hub.parked()
    if (parked.size === 0) return
    this.running = true
    try {
      const rows = (await this.db.query('SELECT user_id::text AS id, last_seq::text AS last FROM inboxes WHERE user_id = ANY($1::bigint[])', [
        [...parked.keys()],
      ])) as {id: string; last: string}[]
      const behind = rows.filter((row) => BigInt(row.last) > parked.get(row.id)!).map((row) => row.id)
      if (behind.length > 0) {
        this.hub.recovered += behind.length
        this.hub.notify(behind)
      }
    } catch (error) {
      this.logger.warn({err: error}, 're-check of parked polls failed')
    } finally {
      this.running = false
    }
  }
}
