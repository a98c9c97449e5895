import type {DataSource} from 'typeorm'

import type {AppendedEvent, EventStreamRepository, EventToAppend} from './event-stream.repository.js'

/** A message a flush of acknowledgements found newly acknowledged by its recipient. */
export interface AckedMessage {
  recipientId: string
  recipient: string
  senderId: string
  messageId: string
  /** A 1:1 message; false for a group message. */
  direct: boolean
}

/** An event to append to one stream (EventStreamRepository.appendEach). */
export interface ReceiptEvent {
  recipientId: string
  type: string
  payload: Record<string, unknown>
}

/**
 * Raises each user's acknowledged seq to the new one (clamped to the head of
 * their stream: nobody acknowledges what does not exist yet), locking the
 * `acks` rows in user id order, and returns the messages of others in the
 * stretch each one passed, (old, new]. Rows are inserted first for users who
 * have none (registered after the migration: they count from 0).
 */
const RAISE_ACKS = `WITH input AS (
         SELECT t.user_id, least(t.seq, i.last_seq) AS seq
           FROM unnest($1::bigint[], $2::bigint[]) AS t(user_id, seq) JOIN inboxes i ON i.user_id = t.user_id
       ), locked AS (
         SELECT a.user_id, a.seq AS old FROM acks a WHERE a.user_id IN (SELECT user_id FROM input) ORDER BY a.user_id FOR UPDATE
       ), raised AS (
         UPDATE acks a SET seq = i.seq FROM locked l JOIN input i ON i.user_id = l.user_id
          WHERE a.user_id = l.user_id AND i.seq > l.old
         RETURNING a.user_id, l.old, a.seq AS new
       )
       SELECT r.user_id::text AS "recipientId", ru.username AS recipient, m.sender_id::text AS "senderId", m.id AS "messageId",
              (m.group_id IS NULL) AS direct
         FROM raised r
         JOIN events e ON e.recipient_id = r.user_id AND e.seq > r.old AND e.seq <= r.new AND e.type = 'message'
         JOIN messages m ON m.id = e.message_id
         JOIN users ru ON ru.id = r.user_id
        WHERE m.sender_id <> r.user_id
        ORDER BY m.sender_id, r.user_id, e.seq`

/**
 * Receipts (docs/api.md, "Receipts"): the acknowledgements behind delivered
 * receipts, and their events. Nothing here runs on the send path or the poll
 * path; a flush runs every FASTCHAT_RECEIPT_FLUSH_MS for all the users
 * acknowledged meanwhile. (Read receipts ride along with the 1:1 sends:
 * MessageRepository.appendEvents.)
 */
export class ReceiptRepository {
  constructor(
    private readonly db: DataSource,
    private readonly stream: EventStreamRepository,
  ) {}

  /**
   * In one transaction: raises the acknowledged seqs and appends the events `receipts` makes of them
   * (one per sender, say). Idempotent: an acknowledgement at or below the
   * stored one finds nothing. Two servers flushing the same user take turns
   * on its `acks` row. Lock order: `acks` rows, then `inboxes` rows, each in
   * id order, as every writer of either does.
   */
  async recordAcks(acks: Map<string, bigint>, receipts: (acked: AckedMessage[]) => ReceiptEvent[]): Promise<AppendedEvent[]> {
    if (acks.size === 0) return []
    const ids = [...acks.keys()].sort((a, b) => (BigInt(a) < BigInt(b) ? -1 : 1))
    return this.db.transaction(async (tx) => {
      // Committed like any append (synchronous_commit on): its events are handed to listeners after the commit, and one
      // lost in a crash of the database after a listener saw it would give its seq to the next event, which that
      // listener's cursor has passed already.
      await tx.query('INSERT INTO acks (user_id) SELECT u FROM unnest($1::bigint[]) AS u ORDER BY u ON CONFLICT DO NOTHING', [ids])
      const acked = (await tx.query(RAISE_ACKS, [ids, ids.map((id) => acks.get(id)!.toString())])) as AckedMessage[]
      if (acked.length === 0) return []
      return this.stream.appendEach(tx, receipts(acked))
    })
  }
}
