import type {DataSource} from 'typeorm'

import type {AppendedEvent, EventToAppend} from './event-stream.repository.js'

/** A message a flush of acknowledgements found newly acknowledged by its recipient. */
export interface AckedMessage {
  recipientId: string
  recipient: string
  senderId: string
  messageId: string
  /** A 1:1 message; false for a group message. */
  direct: boolean
}

/**
 * The messages of others in the stretch each user's new acknowledgement
 * passes, (stored, new] (the new one clamped to the head of their stream:
 * nobody acknowledges what does not exist yet; a user without an `acks` row,
 * registered after the migration, counts from 0). Reads only: no lock.
 */
const ACKED_STRETCHES = `WITH input AS (
         SELECT t.user_id, least(t.seq, i.last_seq) AS seq
           FROM unnest($1::bigint[], $2::bigint[]) AS t(user_id, seq) JOIN inboxes i ON i.user_id = t.user_id
       ), stretch AS (
         SELECT i.user_id, coalesce(a.seq, 0) AS old, i.seq AS new
           FROM input i LEFT JOIN acks a ON a.user_id = i.user_id
          WHERE i.seq > coalesce(a.seq, 0)
       )
       SELECT r.user_id::text AS "recipientId", ru.username AS recipient, m.sender_id::text AS "senderId", m.id AS "messageId",
              (m.group_id IS NULL) AS direct
         FROM stretch r
         JOIN events e ON e.recipient_id = r.user_id AND e.seq > r.old AND e.seq <= r.new AND e.type = 'message'
         JOIN messages m ON m.id = e.message_id
         JOIN users ru ON ru.id = r.user_id
        WHERE m.sender_id <> r.user_id
        ORDER BY m.sender_id, r.user_id, e.seq`

/** Raises each user's acknowledged seq (never lowers it), in user id order; one statement, its own commit. */
const RAISE_ACKS = `INSERT INTO acks (user_id, seq)
       SELECT t.user_id, least(t.seq, i.last_seq)
         FROM unnest($1::bigint[], $2::bigint[]) AS t(user_id, seq) JOIN inboxes i ON i.user_id = t.user_id
        ORDER BY t.user_id
       ON CONFLICT (user_id) DO UPDATE SET seq = greatest(acks.seq, excluded.seq)`

/**
 * Where the receipts' events are appended and handed to delivery as they
 * commit: with the 1:1 sends' statements, on the server their recipient
 * listens on (server/delivery/home-appender.ts).
 */
export interface ReceiptPublisher {
  publish(events: EventToAppend[]): Promise<AppendedEvent[]>
}

/**
 * Receipts (docs/api.md, "Receipts"): the acknowledgements behind delivered
 * receipts, and their events. Nothing here runs on the send path or the poll
 * path; a flush runs every FASTCHAT_RECEIPT_FLUSH_MS for all the users
 * acknowledged meanwhile.
 */
export class ReceiptRepository {
  constructor(
    private readonly db: DataSource,
    private readonly publisher: ReceiptPublisher,
  ) {}

  /**
   * Finds the messages each acknowledgement passed, appends (and hands to
   * delivery) the events `receipts` makes of them (one per sender, say), riding along with the
   * 1:1 sends of the moment (no transaction of its own that would lock every
   * sender's inbox until its commit, holding up each send to them), then
   * raises the stored acknowledgements. In that order, a crash (or a failure)
   * between the append and the raise repeats the receipts at the next flush
   * rather than losing them, and so may two servers flushing the same user at
   * once: a receipt twice is harmless (a client counts each reader once), one
   * lost is not. An acknowledgement at or below the stored one finds nothing.
   */
  async recordAcks(acks: Map<string, bigint>, receipts: (acked: AckedMessage[]) => EventToAppend[]): Promise<AppendedEvent[]> {
    if (acks.size === 0) return []
    const ids = [...acks.keys()].sort((a, b) => (BigInt(a) < BigInt(b) ? -1 : 1))
    const seqs = ids.map((id) => acks.get(id)!.toString())
    const acked = (await this.db.query(ACKED_STRETCHES, [ids, seqs])) as AckedMessage[]
    const events = acked.length > 0 ? receipts(acked) : []
    // Committed like any append (synchronous_commit on), and handed to listeners as soon as committed: held
    // back until the raise below, later commits to the same streams would reach their listeners first (a gap).
    const appended = events.length > 0 ? await this.publisher.publish(events) : []
    await this.db.query(RAISE_ACKS, [ids, seqs])
    return appended
  }
}
