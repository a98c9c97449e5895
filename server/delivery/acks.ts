import type {Logger} from 'pino'

import type {AppendedEvent, EventToAppend} from '../../storage/repositories/event-stream.repository.js'
import type {AckedMessage} from '../../storage/repositories/receipt.repository.js'

/**
 * Delivered receipts (docs/api.md, "Receipts"; docs/architecture.md). A
 * poll's `since` acknowledges every event up to it in the user's stream (the
 * client moves its cursor only after processing), and a stream acknowledges
 * what it wrote. Delivery tells an AckSink, which only remembers the highest
 * seq per user; every FASTCHAT_RECEIPT_FLUSH_MS the AckRecorder writes all of
 * them (ReceiptRepository.recordAcks: one `receipt.delivered` event per
 * sender, riding along with the sends, then the acknowledgements raised),
 * then wakes the senders' listeners here and on peers. A crash before a flush
 * loses nothing: the next poll acknowledges the same stretch again; one
 * between its append and its raise repeats its receipts; and
 * acknowledgements only go up, so a flush repeated after that finds nothing.
 */

/** What delivery tells of acknowledgements: synchronous, O(1), no I/O (called on every poll). */
export interface AckSink {
  acked(userId: string, seq: bigint): void
  stop(): Promise<void>
}

/** What a flush writes through (ReceiptRepository). */
export interface AckStore {
  recordAcks(acks: Map<string, bigint>, receipts: (acked: AckedMessage[]) => EventToAppend[]): Promise<AppendedEvent[]>
}

/**
 * Default of FASTCHAT_RECEIPT_FLUSH_MS: how long receipts to a user who got
 * some within the last window are gathered (a lone one goes at once). Each
 * window gives every sender whose messages were fetched or read meanwhile one
 * more event of each kind, so one more row and poll answer (or stream write):
 * in the closed-loop bench, where each user sends several messages a second,
 * 250 ms cost 30-45% of the throughput, 1 s 10-15% and 2 s 0-8%
 * (docs/benchmarks.md, issue 16). Two seconds is still "at once" for a person
 * looking for ✓✓, and only a busy conversation waits for it.
 */
export const RECEIPT_FLUSH_MS_DEFAULT = 2_000
/**
 * The acknowledgements are written every FASTCHAT_RECEIPT_FLUSH_MS, but at
 * least once a second: a delivered receipt to a quiet sender goes at once
 * from there (the gatherer holds only those to a busy one), and `fastchat
 * send --wait delivered` should not wait for a window made for busy ones.
 */
export const ACK_FLUSH_MS_MAX = 1_000
/** Message ids in one `receipt.delivered` event; more are split over several (an event stays a few tens of KiB). */
export const RECEIPT_IDS_PER_EVENT = 500
/** Users whose flushed acknowledgement is remembered (to skip polls that acknowledge nothing new); past this it starts over, which only costs a flush. */
const MAX_REMEMBERED_ACKS = 200_000
/** A failing flush is logged at most this often: the database being down is already loud elsewhere. */
const FLUSH_WARN_EVERY_MS = 30_000

/** The `receipt.delivered` events of one flush: per sender, who got which of their messages. */
export function deliveredReceipts(acked: Pick<AckedMessage, 'senderId' | 'recipient' | 'messageId'>[]): EventToAppend[] {
  const bySender = new Map<string, Map<string, string[]>>()
  for (const message of acked) {
    let byRecipient = bySender.get(message.senderId)
    if (!byRecipient) bySender.set(message.senderId, (byRecipient = new Map()))
    let ids = byRecipient.get(message.recipient)
    if (!ids) byRecipient.set(message.recipient, (ids = []))
    ids.push(message.messageId)
  }
  const events: EventToAppend[] = []
  for (const [senderId, byRecipient] of bySender) {
    let receipts: {by: string; messages: string[]}[] = []
    let count = 0
    const emit = () => {
      if (receipts.length > 0) events.push({recipientId: senderId, type: 'receipt.delivered', payload: {receipts}})
      receipts = []
      count = 0
    }
    for (const [by, ids] of byRecipient) {
      for (let i = 0; i < ids.length; ) {
        const take = ids.slice(i, i + (RECEIPT_IDS_PER_EVENT - count))
        receipts.push({by, messages: take})
        count += take.length
        i += take.length
        if (count >= RECEIPT_IDS_PER_EVENT) emit()
      }
    }
    emit()
  }
  return events
}

export class AckRecorder implements AckSink {
  private pending = new Map<string, bigint>()
  /** Per user, the highest seq written: a poll at the same cursor again (most of them) costs a map lookup. */
  private readonly flushed = new Map<string, bigint>()
  private timer: NodeJS.Timeout | undefined
  private flushing: Promise<void> | undefined
  private warnedAt = 0
  private stopped = false
  /** Flushes written, and receipt events they appended (for tests and metrics). */
  readonly stats = {flushes: 0, receipts: 0, failures: 0}

  constructor(
    /** Appends the receipts' events and hands them to the senders' listeners as they commit (ReceiptRepository). */
    private readonly store: AckStore,
    private readonly logger: Logger,
    private readonly flushMs = ACK_FLUSH_MS_MAX,
  ) {}

  acked(userId: string, seq: bigint): void {
    if (seq <= 0n || this.stopped) return
    const done = this.flushed.get(userId)
    if (done !== undefined && seq <= done) return
    const waiting = this.pending.get(userId)
    if (waiting !== undefined && seq <= waiting) return
    this.pending.set(userId, seq)
    this.timer ??= setTimeout(() => void this.flush(), this.flushMs)
  }

  /** Writes what is pending now (also called by the timer); one flush at a time. */
  async flush(): Promise<void> {
    this.timer = undefined
    while (this.flushing) await this.flushing
    if (this.pending.size === 0) return
    const acks = this.pending
    this.pending = new Map()
    this.flushing = this.write(acks).finally(() => (this.flushing = undefined))
    await this.flushing
  }

  private async write(acks: Map<string, bigint>): Promise<void> {
    try {
      const appended = await this.store.recordAcks(acks, deliveredReceipts)
      this.stats.flushes++
      this.stats.receipts += appended.length
      if (this.flushed.size > MAX_REMEMBERED_ACKS) this.flushed.clear()
      for (const [userId, seq] of acks) this.flushed.set(userId, seq)
    } catch (error) {
      this.stats.failures++
      // Kept for the next flush (a newer acknowledgement wins): nothing is lost, it is only late.
      for (const [userId, seq] of acks) {
        const waiting = this.pending.get(userId)
        if (waiting === undefined || seq > waiting) this.pending.set(userId, seq)
      }
      if (!this.stopped) this.timer ??= setTimeout(() => void this.flush(), this.flushMs)
      const now = Date.now()
      if (now - this.warnedAt >= FLUSH_WARN_EVERY_MS) {
        this.warnedAt = now
        this.logger.warn({err: error, users: acks.size}, 'recording delivered receipts failed; retried at the next flush')
      }
    }
  }

  /** Writes what is pending (a draining server), then takes no more. */
  async stop(): Promise<void> {
    if (this.timer) clearTimeout(this.timer)
    this.timer = undefined
    await this.flush().catch(() => undefined)
    this.stopped = true
    if (this.timer) clearTimeout(this.timer)
  }
}
