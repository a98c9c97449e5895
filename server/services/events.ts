import type {EventRepository, EventRow} from '../../storage/repositories/message.repository.js'
import type {DeliveryHub} from '../delivery/hub.js'
import {CursorError} from './errors.js'
import {messageView} from './messages.js'
import {PerUserSlots} from './per-user-slots.js'

export type EventView = Record<string, unknown> & {seq: number; type: string}

function eventView(row: EventRow): EventView {
  const seq = Number(row.seq)
  if (row.type === 'message' && row.id) return {seq, type: 'message', ...messageView(row as Required<EventRow>)}
  return {seq, type: row.type, ...(row.payload ?? {}), at: new Date(row.at).toISOString()}
}

/** Users whose last read is remembered; past this all are forgotten (which only costs each a read). */
const MAX_REMEMBERED_READS = 200_000
/**
 * Reads of one user's stream in flight at once: each may hold up to the byte
 * cap of events (FASTCHAT_POLL_MAX_BYTES) in memory, so one account opening
 * many polls waits for its own turns instead of multiplying that (hole 5 of
 * issue 12). One client needs one; two let a second device through at once.
 */
const READS_PER_USER_DEFAULT = 2

export class EventService {
  /** Per user: the cursor the last read here ended at, and the hub's version for the user before that read. */
  private readonly lastRead = new Map<string, {next: bigint; version: number}>()

  private readonly reads: PerUserSlots

  constructor(
    private readonly events: EventRepository,
    private readonly hub: DeliveryHub,
    options: {readsPerUser?: number} = {},
  ) {
    this.reads = new PerUserSlots(options.readsPerUser ?? READS_PER_USER_DEFAULT)
  }

  /**
   * Returns the events after `since` at once if there are any, else waits up
   * to `timeoutMs` for one. Subscribe first, then read, then wait: a commit
   * between the read and the wait has already marked the waiter as woken.
   */
  private remember(userId: string, next: bigint, version: number): void {
    if (this.lastRead.size > MAX_REMEMBERED_READS) this.lastRead.clear()
    this.lastRead.set(userId, {next, version})
  }

  async poll(userId: string, since: bigint, timeoutMs: number, limit: number, signal: AbortSignal, client?: string): Promise<{events: EventView[]; next: number}> {
    const deadline = Date.now() + timeoutMs
    const waiter = this.hub.subscribe(userId, client)
    try {
      // A long-poll that follows one this server answered at the same cursor, with no
      // wake-up for this user since, would most likely read nothing: it parks at once.
      // If a wake-up was lost on the way, the re-check of parked polls finds the news,
      // so this costs at most latency. A poll that will not wait (timeout 0) always reads.
      const last = this.lastRead.get(userId)
      let skipRead = timeoutMs > 0 && last !== undefined && last.next === since && last.version === this.hub.version(userId)
      for (;;) {
        if (!skipRead) {
          // Waiting for a turn comes after subscribing: a wake-up meanwhile is kept by the waiter.
          const release = await this.reads.acquire(userId, signal)
          // Gone, or replaced by a newer poll while it waited: a replaced poll answers empty, as it would have at once.
          if (!release || waiter.superseded) {
            release?.()
            return {events: [], next: Number(since)}
          }
          let head: Awaited<ReturnType<EventRepository['read']>>
          const version = this.hub.version(userId)
          try {
            head = await this.events.read(userId, since, limit)
          } finally {
            release()
          }
          if (since < head.prunedThrough) {
            throw new CursorError('FC_CURSOR_EXPIRED', 'Events after this cursor were removed by retention; re-sync from history and continue from `oldest`.', {
              extensions: {oldest: Number(head.prunedThrough)},
            })
          }
          if (since > head.lastSeq) {
            throw new CursorError('FC_CURSOR_AHEAD', 'This cursor is ahead of your event stream; continue from `last`.', {extensions: {last: Number(head.lastSeq)}})
          }
          if (head.events.length > 0) {
            const events = head.events.map(eventView)
            this.hub.delivered.mark(events.length)
            const next = events[events.length - 1]!.seq
            // Only a read that reached the head says the stream ends at `next` (a full page may not).
            if (BigInt(next) === head.lastSeq) this.remember(userId, head.lastSeq, version)
            return {events, next}
          }
          this.remember(userId, since, version)
        }
        skipRead = false
        waiter.since = since
        const remaining = deadline - Date.now()
        if (remaining <= 0 || this.hub.closed || signal.aborted || waiter.superseded) return {events: [], next: Number(since)}
        await waiter.wait(remaining, signal)
      }
    } finally {
      waiter.cancel()
    }
  }
}
