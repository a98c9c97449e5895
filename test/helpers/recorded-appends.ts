import type {AppendedEvent, EventToAppend} from '../../storage/repositories/event-stream.repository.js'

/**
 * A stand-in for the statements that append events (MessageRepository.appendEvents):
 * records each append and answers it as committed, with seqs counting up;
 * `failNext` makes the next one throw as a lost connection would.
 */
export class RecordedAppends {
  readonly appends: EventToAppend[][] = []
  failNext = false
  private seq = 0

  /** Records `events`, then answers once `committed` (if given) settles. */
  async append(events: EventToAppend[], committed?: Promise<void>): Promise<AppendedEvent[]> {
    if (this.failNext) {
      this.failNext = false
      throw new Error('connection lost')
    }
    this.appends.push(events)
    await committed
    return events.map((event) => ({recipientId: event.recipientId, seq: String(++this.seq), type: event.type, payload: event.payload, at: new Date()}))
  }
}
