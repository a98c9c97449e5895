import type {AppendedEvent, EventToAppend} from '../../storage/repositories/event-stream.repository.js'
import type {AckedMessage} from '../../storage/repositories/receipt.repository.js'
import {type EventAppender, readReceiptEvents} from '../services/receipts.js'
import {deliveredReceipts} from './acks.js'

/** The event types ReceiptGatherer gathers; anything else is appended at once. */
const GATHERED = new Set(['receipt.read', 'receipt.delivered'])

/** Recipients whose last flush is remembered past this count are forgotten once their window is over. */
const REMEMBERED_RECIPIENTS = 10_000

/**
 * The receipts' events of one flush, merged: per recipient, the items of all
 * its `receipt.delivered` events in one (a reader's message ids together) and
 * those of its `receipt.read` events in one, each split past its cap
 * (RECEIPT_IDS_PER_EVENT ids; READ_RECEIPTS_PER_EVENT receipts or
 * READ_RECEIPT_EVENT_MAX_BYTES) as the events of one flush are made
 * (deliveredReceipts, readReceiptEvents). Items keep the order they came in.
 */
export function mergeReceiptEvents(events: EventToAppend[]): EventToAppend[] {
  // Delivered receipts go back to what deliveredReceipts makes its events of: one entry per message id.
  const acked: Pick<AckedMessage, 'senderId' | 'recipient' | 'messageId'>[] = []
  const read: {recipientId: string; from: string; ciphertext: string}[] = []
  for (const event of events) {
    if (event.type === 'receipt.read') {
      for (const receipt of event.payload.receipts as {from: string; ciphertext: string}[]) read.push({recipientId: event.recipientId, ...receipt})
      continue
    }
    for (const {by, messages} of event.payload.receipts as {by: string; messages: string[]}[]) {
      for (const messageId of messages) acked.push({senderId: event.recipientId, recipient: by, messageId})
    }
  }
  return [...deliveredReceipts(acked), ...readReceiptEvents(read)]
}

/** A receipt's event waiting for its recipient's window, and the caller waiting for its commit. */
interface Held {
  event: EventToAppend
  resolve: (appended: AppendedEvent[]) => void
  reject: (error: unknown) => void
}

/**
 * Receipts gathered per recipient by the server that appends them: their
 * recipient's (HomeAppender hands it the receipts of users who listen here,
 * peers send theirs with POST /v1/cluster/events). Every receipt to a user,
 * delivered or read, from any reader through any server, waits for that
 * user's window (FASTCHAT_RECEIPT_FLUSH_MS) and goes in at most one
 * `receipt.delivered` and one `receipt.read` event per window
 * (mergeReceiptEvents); gathered on the servers they came through instead,
 * each server gave each sender up to one of each a window, up to four a
 * second with two servers: in the closed-loop bench receipts were 40% of
 * the events appended (docs/benchmarks.md, "Receipts, fifth pass").
 *
 * - A receipt to someone who got none within the window goes at once (with
 *   what else is due), so a quiet conversation waits for nothing.
 * - Otherwise it waits for the end of that user's window; a flush takes
 *   every user whose window ends within the next quarter of it, so a busy
 *   server flushes a few times a window, not once per user.
 * - A flush appends riding along with the sends of the moment
 *   (MessageRepository.appendEvents) and hands what it appended to delivery
 *   the moment it commits (an event held back while later commits to the
 *   same stream are delivered is a gap for its listener).
 * - appendEvents resolves once its events are committed, with the events
 *   they went into, so a read receipt's `204` (and a peer's) is as durable as
 *   a message's `201`; a failed flush rejects every caller it held (they
 *   send again: a receipt twice is harmless, one lost is not).
 */
export class ReceiptGatherer implements EventAppender {
  private pending = new Map<string, Held[]>()
  /** Per recipient, when its last events were flushed (only the recent ones matter). */
  private readonly flushedAt = new Map<string, number>()
  private timer: NodeJS.Timeout | undefined
  private timerDue = Infinity
  private flushing: Promise<void> | undefined

  constructor(
    /** Appends here (MessageRepository.appendEvents: riding along with the 1:1 sends). */
    private readonly local: EventAppender,
    /** Hands what was appended to its listeners here and on peers (Delivery.deliverEvents). */
    private readonly deliver: (events: AppendedEvent[]) => void,
    private windowMs: number,
  ) {}

  /** Holds receipts' events for their recipients' windows (anything else is appended now); resolves once committed. */
  async appendEvents(events: EventToAppend[]): Promise<AppendedEvent[]> {
    const now: EventToAppend[] = []
    const held: EventToAppend[] = []
    for (const event of events) (GATHERED.has(event.type) && event.unlessBlockedBy === undefined ? held : now).push(event)
    const parts = held.map(
      (event) =>
        new Promise<AppendedEvent[]>((resolve, reject) => {
          const list = this.pending.get(event.recipientId)
          const entry: Held = {event, resolve, reject}
          if (list) list.push(entry)
          else this.pending.set(event.recipientId, [entry])
        }),
    )
    this.schedule()
    if (now.length > 0) {
      parts.push(
        this.local.appendEvents(now).then((appended) => {
          if (appended.length > 0) this.deliver(appended)
          return appended
        }),
      )
    }
    // The events each part went into, once each (several of this call's may share one).
    return [...new Set((await Promise.all(parts)).flat())]
  }

  /** A draining server: what is held goes now, and so does whatever still comes. Resolves when nothing is held. */
  async drain(): Promise<void> {
    this.windowMs = 0
    this.schedule()
    while (this.flushing || this.pending.size > 0) {
      if (this.flushing) await this.flushing
      else await this.flush()
    }
  }

  private dueAt(recipientId: string): number {
    const last = this.flushedAt.get(recipientId)
    return last === undefined ? 0 : last + this.windowMs
  }

  /** Sets the timer for the earliest recipient due (at once when one is); a flush under way sets it when done. */
  private schedule(): void {
    if (this.flushing || this.pending.size === 0) return
    const now = Date.now()
    let due = Infinity
    for (const recipientId of this.pending.keys()) {
      due = Math.min(due, this.dueAt(recipientId))
      if (due <= now) break
    }
    if (this.timer && this.timerDue <= due) return
    clearTimeout(this.timer)
    this.timerDue = due
    // Even "at once" waits for the end of this turn of the event loop: what one call brings goes together.
    this.timer = setTimeout(() => void this.flush(), Math.max(0, due - now))
  }

  private flush(): Promise<void> {
    clearTimeout(this.timer)
    this.timer = undefined
    this.timerDue = Infinity
    if (this.flushing) return this.flushing
    const now = Date.now()
    const horizon = now + this.windowMs / 4
    const taken: Held[] = []
    for (const [recipientId, held] of this.pending) {
      if (this.dueAt(recipientId) > horizon) continue
      this.pending.delete(recipientId)
      this.flushedAt.set(recipientId, now)
      taken.push(...held)
    }
    if (this.flushedAt.size > REMEMBERED_RECIPIENTS) {
      for (const [recipientId, at] of this.flushedAt) if (at + this.windowMs <= now) this.flushedAt.delete(recipientId)
    }
    if (taken.length === 0) {
      this.schedule()
      return Promise.resolve()
    }
    this.flushing = this.write(taken).finally(() => {
      this.flushing = undefined
      this.schedule()
    })
    return this.flushing
  }

  private async write(taken: Held[]): Promise<void> {
    try {
      const appended = await this.local.appendEvents(mergeReceiptEvents(taken.map((held) => held.event)))
      if (appended.length > 0) this.deliver(appended)
      const into = new Map<string, AppendedEvent[]>()
      for (const event of appended) {
        const key = `${event.recipientId} ${event.type}`
        const list = into.get(key)
        if (list) list.push(event)
        else into.set(key, [event])
      }
      for (const held of taken) held.resolve(into.get(`${held.event.recipientId} ${held.event.type}`) ?? [])
    } catch (error) {
      for (const held of taken) held.reject(error)
    }
  }
}
