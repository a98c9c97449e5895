import {performance} from 'node:perf_hooks'

import {Failures, type BenchUser, type MessageSender, sleep} from './http.js'
import {percentiles, round, type Percentiles} from './stats.js'

/**
 * Send→receive latency of 1:1 messages, measured at the receiver. A poll may
 * see a message before its sender has the 201 (and so the message id); the
 * latency is computed once both the receive time and the send start are known.
 * Only messages *sent* inside the measured window count for latency and
 * acknowledged sends/s; delivered/s counts deliveries made inside the window.
 */
export class Deliveries {
  private readonly sentAt = new Map<string, number>()
  private readonly receivedEarly = new Map<string, number>()
  private readonly seen = new Set<string>()
  private readonly latencies: number[] = []
  /** Send start to 201, for sends started in the window. */
  private readonly ackLatencies: number[] = []
  /** Nothing is measured until setWindow (warm-up traffic runs before it). */
  private windowFrom = Number.POSITIVE_INFINITY
  private windowTo = Number.POSITIVE_INFINITY
  readonly failures = new Failures()
  acked = 0
  ackedInWindow = 0
  delivered = 0
  deliveredInWindow = 0
  duplicates = 0
  /** Sends started (acknowledged or not) inside the window. */
  startedInWindow = 0
  inFlight = 0

  setWindow(from: number, to: number): void {
    this.windowFrom = from
    this.windowTo = to
  }

  private inWindow(t: number): boolean {
    return t >= this.windowFrom && t < this.windowTo
  }

  /** Sends `to` a message from `from` and records the outcome; never rejects. */
  async send(sender: MessageSender, from: BenchUser, to: BenchUser, server?: string): Promise<void> {
    const start = performance.now()
    if (this.inWindow(start)) this.startedInWindow++
    this.inFlight++
    const {id, failure} = await sender.send(from, to.username, server)
    this.inFlight--
    if (id && this.inWindow(start)) this.ackLatencies.push(performance.now() - start)
    if (id) this.acknowledged(id, start)
    else this.failures.add(`send ${failure}`)
  }

  acknowledged(id: string, start: number): void {
    this.acked++
    if (this.inWindow(start)) this.ackedInWindow++
    const receivedAt = this.receivedEarly.get(id)
    if (receivedAt === undefined) {
      this.sentAt.set(id, start)
    } else {
      this.receivedEarly.delete(id)
      this.record(start, receivedAt)
    }
  }

  received(id: string, at: number): void {
    if (this.seen.has(id)) {
      this.duplicates++
      return
    }
    this.seen.add(id)
    this.delivered++
    if (this.inWindow(at)) this.deliveredInWindow++
    const start = this.sentAt.get(id)
    if (start === undefined) {
      this.receivedEarly.set(id, at)
    } else {
      this.sentAt.delete(id)
      this.record(start, at)
    }
  }

  private record(start: number, receivedAt: number): void {
    if (this.inWindow(start)) this.latencies.push(receivedAt - start)
  }

  /** Acknowledged and not (yet) received. */
  get outstanding(): number {
    return this.sentAt.size
  }

  latency(): Percentiles {
    return percentiles(this.latencies)
  }

  /** Figures for the measured window. */
  summary(): DeliverySummary {
    const seconds = (this.windowTo - this.windowFrom) / 1000
    return {
      windowSeconds: round(seconds),
      sendsStartedPerSecond: round(this.startedInWindow / seconds, 1),
      ackedPerSecond: round(this.ackedInWindow / seconds, 1),
      deliveredPerSecond: round(this.deliveredInWindow / seconds, 1),
      latencyMs: this.latency(),
      ackLatencyMs: percentiles(this.ackLatencies),
      acked: this.acked,
      delivered: this.delivered,
      missing: this.outstanding,
      duplicates: this.duplicates,
      failures: this.failures.toJSON(),
    }
  }
}

export interface DeliverySummary {
  windowSeconds: number
  sendsStartedPerSecond: number
  ackedPerSecond: number
  deliveredPerSecond: number
  latencyMs: Percentiles
  /** Send start to the 201 (the sender's view). */
  ackLatencyMs: Percentiles
  acked: number
  delivered: number
  /** Acknowledged but never received by the end of the drain. */
  missing: number
  duplicates: number
  failures: Record<string, number>
}

/** A random element of `list` other than `not`. */
export function pickOther<T>(list: T[], not: T): T {
  for (;;) {
    const candidate = list[Math.floor(Math.random() * list.length)]!
    if (candidate !== not || list.length === 1) return candidate
  }
}

export const pick = <T>(list: T[]): T => list[Math.floor(Math.random() * list.length)]!

/** Closed loop: every sender keeps exactly one send in flight until `until` (performance.now() ms). */
export async function closedLoop(options: {
  senders: BenchUser[]
  recipients: BenchUser[]
  until: number
  sender: MessageSender
  deliveries: Deliveries
  /** Whom each sender writes to (its conversations); default: any other recipient, at random. */
  partners?: (from: BenchUser) => BenchUser[]
}): Promise<void> {
  const {senders, recipients, until, sender, deliveries, partners} = options
  await Promise.all(
    senders.map(async (from) => {
      const mine = partners?.(from)
      while (performance.now() < until) {
        const failuresBefore = deliveries.failures.total
        await deliveries.send(sender, from, mine ? mine[Math.floor(Math.random() * mine.length)]! : pickOther(recipients, from))
        // A failing server must not turn this into a hot loop.
        if (deliveries.failures.total > failuresBefore) await sleep(50)
      }
    }),
  )
}

/**
 * Open loop: `rate` sends per second for `durationMs`, whatever the answers
 * (so a slow server shows as latency, not as a lower offered load). Beyond
 * `maxInFlight` outstanding sends, sends are skipped and counted.
 */
export async function openLoop(options: {
  rate: number
  durationMs: number
  senders: BenchUser[]
  recipients: BenchUser[]
  sender: MessageSender
  deliveries: Deliveries
  maxInFlight: number
}): Promise<{issued: number; skipped: number}> {
  const {rate, durationMs, senders, recipients, sender, deliveries, maxInFlight} = options
  const start = performance.now()
  const pending = new Set<Promise<void>>()
  let issued = 0
  let skipped = 0
  for (;;) {
    const elapsed = performance.now() - start
    const due = Math.min(Math.floor((elapsed * rate) / 1000), Math.round((durationMs * rate) / 1000))
    while (issued < due) {
      issued++
      if (deliveries.inFlight >= maxInFlight) {
        skipped++
        continue
      }
      const from = pick(senders)
      const work = deliveries.send(sender, from, pickOther(recipients, from))
      pending.add(work)
      void work.finally(() => pending.delete(work))
    }
    if (elapsed >= durationMs) break
    await sleep(1)
  }
  await Promise.all(pending)
  return {issued, skipped}
}
