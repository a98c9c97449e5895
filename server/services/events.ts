import type {EventRepository, EventRow} from '../../storage/repositories/message.repository.js'
import {AppError, ConflictError} from '../http/errors.js'
import type {DeliveryHub} from '../delivery/hub.js'
import {messageView} from './messages.js'

export class GoneError extends AppError {
  constructor(oldest: bigint) {
    super('FC_CURSOR_EXPIRED', 410, 'Gone', 'Events after this cursor were removed by retention; re-sync from history and continue from `oldest`.', {
      extensions: {oldest: Number(oldest)},
    })
  }
}

export type EventView = Record<string, unknown> & {seq: number; type: string}

function eventView(row: EventRow): EventView {
  const seq = Number(row.seq)
  if (row.type === 'message' && row.id) return {seq, type: 'message', ...messageView(row as Required<EventRow>)}
  return {seq, type: row.type, ...(row.payload ?? {})}
}

export class EventService {
  constructor(
    private readonly events: EventRepository,
    private readonly hub: DeliveryHub,
  ) {}

  /**
   * Returns the events after `since` at once if there are any, else waits up
   * to `timeoutMs` for one. Subscribe first, then read, then wait: a commit
   * between the read and the wait has already marked the waiter as woken.
   */
  async poll(userId: string, since: bigint, timeoutMs: number, limit: number, signal: AbortSignal, client?: string): Promise<{events: EventView[]; next: number}> {
    const deadline = Date.now() + timeoutMs
    const waiter = this.hub.subscribe(userId, client)
    try {
      for (;;) {
        const head = await this.events.read(userId, since, limit)
        if (since < head.prunedThrough) throw new GoneError(head.prunedThrough)
        if (since > head.lastSeq) {
          throw new ConflictError('FC_CURSOR_AHEAD', 'This cursor is ahead of your event stream; continue from `last`.', {last: Number(head.lastSeq)})
        }
        if (head.events.length > 0) {
          const events = head.events.map(eventView)
          this.hub.delivered.mark(events.length)
          return {events, next: events[events.length - 1]!.seq}
        }
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
