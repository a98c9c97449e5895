import {randomUUID} from 'node:crypto'

import type {DataSource, EntityManager} from 'typeorm'

import type {MessageKind} from '../entities/message.js'
import {prepared} from './prepared.js'


/** What every message carries; the conversation key is `u:<low>:<high>` or `g:<group>`. */
interface NewMessage {
  senderId: string
  conversation: string
  kind: MessageKind
  ciphertext: string
  blobId: string | null
  idempotencyKey: string | null
}

export interface NewDirectMessage extends NewMessage {
  recipientId: string
}

export interface NewGroupMessage extends NewMessage {
  groupId: string
  epoch: number
  /**
   * Who gets an event in their stream; runs inside the transaction, after the
   * idempotency check, and may throw to refuse the message.
   */
  recipients: (tx: EntityManager) => Promise<string[]>
}

export interface StoredMessage {
  id: string
  sentAt: Date
  /** True when an earlier send with the same idempotency key is returned instead. */
  duplicate: boolean
  /** On a duplicate, whether the retry carried the same content. */
  sameContent: boolean
  /** The recipients whose streams got the event (none for a duplicate). */
  deliveredTo: string[]
}

export interface MessageRow {
  id: string
  from: string
  toUser: string | null
  groupId: string | null
  kind: MessageKind
  ciphertext: string
  blobId: string | null
  epoch: number | null
  sentAt: Date
}

export interface EventRow extends Partial<MessageRow> {
  seq: string
  type: string
  payload: Record<string, unknown> | null
  /** When the event was appended (a message event has the message's `sentAt` instead). */
  at: Date
}

const MESSAGE_COLUMNS = `m.id, su.username AS "from", ru.username AS "toUser", m.group_id AS "groupId", m.kind,
  m.ciphertext, m.blob_id AS "blobId", m.epoch, m.sent_at AS "sentAt"`

/**
 * Appends one event per recipient to their streams, inside the caller's
 * transaction. The inbox rows are locked in id order (two group sends cannot
 * deadlock) and held until commit, which is what keeps each stream gap-free
 * and in commit order (docs/architecture.md, "Why the cursor cannot skip").
 * The caller wakes the recipients' polls after the commit (DeliveryHub.announce).
 */
export async function appendEvents(
  tx: EntityManager,
  recipientIds: string[],
  event: {type: string; messageId?: string; payload?: Record<string, unknown>},
): Promise<void> {
  if (recipientIds.length === 0) return
  const ids = [...new Set(recipientIds)].sort((a, b) => (BigInt(a) < BigInt(b) ? -1 : 1))
  await tx.query(
    `WITH locked AS (
       SELECT user_id FROM inboxes WHERE user_id = ANY($1::bigint[]) ORDER BY user_id FOR UPDATE
     ), bumped AS (
       UPDATE inboxes i SET last_seq = i.last_seq + 1 FROM locked l WHERE i.user_id = l.user_id
       RETURNING i.user_id, i.last_seq
     )
     INSERT INTO events (recipient_id, seq, type, message_id, payload)
     SELECT user_id, last_seq, $2, $3, $4 FROM bumped`,
    [ids, event.type, event.messageId ?? null, event.payload ? JSON.stringify(event.payload) : null],
  )
}

export class MessageRepository {
  constructor(private readonly db: DataSource) {}

  /**
   * A one-to-one message: stored with its recipient's event in ONE statement
   * (one round trip, committed on its own), which is the whole of the send's
   * database work. The message is inserted first, unless the recipient blocks
   * the sender (a primary-key lookup in the same statement); only if it is
   * new (no earlier message with this idempotency key) is the recipient's
   * inbox row locked, its seq bumped and the event inserted, exactly as
   * appendEvents does, and the lock is held until the statement's commit. A
   * send that stores nothing finds the earlier one with its key, or the
   * block, with a second query. Undefined: refused, the recipient blocks the sender.
   */
  async storeDirect(message: NewDirectMessage): Promise<StoredMessage | undefined> {
    const id = randomUUID()
    const [row] = await prepared<{sentAt: Date}>(
      this.db,
      'message-store-direct',
      `WITH inserted AS (
         INSERT INTO messages (id, sender_id, recipient_id, conversation, kind, ciphertext, blob_id, idempotency_key)
         SELECT $1, $2, $3, $4, $5, $6, $7, $8
          WHERE NOT EXISTS (SELECT 1 FROM blocks WHERE blocker_id = $3 AND blocked_id = $2)
         ON CONFLICT (sender_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
         RETURNING sent_at
       ), locked AS (
         SELECT user_id FROM inboxes WHERE user_id = $3 AND EXISTS (SELECT 1 FROM inserted) FOR UPDATE
       ), bumped AS (
         UPDATE inboxes i SET last_seq = i.last_seq + 1 FROM locked l WHERE i.user_id = l.user_id
         RETURNING i.user_id, i.last_seq
       ), appended AS (
         INSERT INTO events (recipient_id, seq, type, message_id) SELECT user_id, last_seq, 'message', $1 FROM bumped
       )
       SELECT sent_at AS "sentAt" FROM inserted`,
      [id, message.senderId, message.recipientId, message.conversation, message.kind, message.ciphertext, message.blobId, message.idempotencyKey],
    )
    if (row) return {id, sentAt: row.sentAt, duplicate: false, sameContent: true, deliveredTo: [message.recipientId]}
    // A retry of a send accepted before the block still answers with its first result.
    const earlier = message.idempotencyKey ? await this.findByIdempotencyKey(this.db.manager, message) : undefined
    if (earlier) return earlier
    const blocked = (await this.db.query('SELECT 1 FROM blocks WHERE blocker_id = $1 AND blocked_id = $2', [message.recipientId, message.senderId])) as unknown[]
    if (blocked.length > 0) return undefined
    throw new Error('idempotency conflict without a stored message')
  }

  /** A group message and its members' events, in one transaction: committed before the sender hears 201. */
  async storeGroup(message: NewGroupMessage): Promise<StoredMessage> {
    return this.db.transaction(async (tx) => {
      if (message.idempotencyKey) {
        const earlier = await this.findByIdempotencyKey(tx, message)
        if (earlier) return earlier
      }
      const deliverTo = await message.recipients(tx)
      const id = randomUUID()
      const inserted = (await tx.query(
        `INSERT INTO messages (id, sender_id, group_id, epoch, conversation, kind, ciphertext, blob_id, idempotency_key)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (sender_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
         RETURNING sent_at AS "sentAt"`,
        [id, message.senderId, message.groupId, message.epoch, message.conversation, message.kind, message.ciphertext, message.blobId,
          message.idempotencyKey],
      )) as {sentAt: Date}[]
      if (inserted.length === 0) {
        // A concurrent retry with the same key committed first; ours waited for it.
        const earlier = await this.findByIdempotencyKey(tx, message)
        if (earlier) return earlier
        throw new Error('idempotency conflict without a stored message')
      }
      await appendEvents(tx, deliverTo, {type: 'message', messageId: id})
      return {id, sentAt: inserted[0]!.sentAt, duplicate: false, sameContent: true, deliveredTo: deliverTo}
    })
  }

  private async findByIdempotencyKey(tx: EntityManager, message: NewDirectMessage | NewGroupMessage): Promise<StoredMessage | undefined> {
    const recipientId = 'recipientId' in message ? message.recipientId : null
    const groupId = 'groupId' in message ? message.groupId : null
    const [row] = (await tx.query(
      `SELECT id, sent_at AS "sentAt",
              (recipient_id IS NOT DISTINCT FROM $3::bigint AND group_id IS NOT DISTINCT FROM $4::uuid
               AND ciphertext = $5 AND kind = $6 AND blob_id IS NOT DISTINCT FROM $7::uuid) AS "sameContent"
         FROM messages WHERE sender_id = $1 AND idempotency_key = $2`,
      [message.senderId, message.idempotencyKey, recipientId, groupId, message.ciphertext, message.kind, message.blobId],
    )) as {id: string; sentAt: Date; sameContent: boolean}[]
    return row ? {...row, duplicate: true, deliveredTo: []} : undefined
  }

  /**
   * One conversation, newest first, strictly older than message `before` if
   * given. With `memberId` (a group), only the epochs that user was a member
   * of, and nothing from the members that user blocks.
   */
  async history(conversation: string, before: string | undefined, limit: number, memberId?: string): Promise<MessageRow[]> {
    return (await this.db.query(
      `SELECT ${MESSAGE_COLUMNS}
         FROM messages m JOIN users su ON su.id = m.sender_id LEFT JOIN users ru ON ru.id = m.recipient_id
        WHERE m.conversation = $1
          AND ($2::uuid IS NULL OR (m.sent_at, m.id) < (SELECT sent_at, id FROM messages WHERE id = $2::uuid AND conversation = $1))
          AND ($4::bigint IS NULL OR EXISTS (
                SELECT 1 FROM group_epochs ge WHERE ge.group_id = m.group_id AND ge.epoch = m.epoch AND $4::bigint = ANY(ge.member_ids)))
          AND ($4::bigint IS NULL OR NOT EXISTS (SELECT 1 FROM blocks bl WHERE bl.blocker_id = $4::bigint AND bl.blocked_id = m.sender_id))
        ORDER BY m.sent_at DESC, m.id DESC
        LIMIT $3`,
      [conversation, before ?? null, limit, memberId ?? null],
    )) as MessageRow[]
  }

  async exists(conversation: string, id: string): Promise<boolean> {
    const rows = (await this.db.query('SELECT 1 FROM messages WHERE id = $1 AND conversation = $2', [id, conversation])) as unknown[]
    return rows.length > 0
  }
}

export interface StreamRead {
  lastSeq: bigint
  prunedThrough: bigint
  events: EventRow[]
}

interface PendingRead {
  userId: string
  since: bigint
  limit: number
  resolve: (read: StreamRead) => void
  reject: (error: unknown) => void
}

type ReadRow = EventRow & {ord?: string; lastSeq: string; prunedThrough: string}

/** Most streams one batched read covers. */
const READ_BATCH_MAX = 500

/** Default of the byte cap on one read (FASTCHAT_POLL_MAX_BYTES). */
export const READ_MAX_BYTES_DEFAULT = 1024 * 1024
/** What an event's JSON carries besides its ciphertext or payload (seq, ids, names, times), counted against the cap. */
const EVENT_ENVELOPE_BYTES = 256

/**
 * Up to `limit` events of one stream after `since`, but no more than `cap`
 * bytes of them, and always the first: the running sum of each event's size
 * (ciphertext or payload, plus its envelope) is computed over just the seqs
 * and lengths (octet_length reads a TOASTed value's length without fetching
 * it), and only the events that fit are then joined with their content. So a
 * read of a stream full of 64 KiB messages loads about `cap` bytes, never
 * 1,000 × 64 KiB to cut afterwards. The sizes only grow along the stream, so
 * what passes is a prefix and the answer's `next` continues exactly after it.
 */
const streamEvents = (recipient: string, since: string, limit: string, cap: string, lastSeq: string) => `
           SELECT e.seq::text AS seq, e.type, e.payload, e.created_at AS "at", ${MESSAGE_COLUMNS}
             FROM (
               SELECT sized.seq FROM (
                 SELECT e.seq, row_number() OVER w AS n,
                        sum(${EVENT_ENVELOPE_BYTES} + coalesce(octet_length(sm.ciphertext), 0) + coalesce(octet_length(e.payload::text), 0)) OVER w AS upto
                   FROM events e LEFT JOIN messages sm ON sm.id = e.message_id
                  WHERE e.recipient_id = ${recipient} AND e.seq > ${since} AND ${lastSeq} > ${since}
                 WINDOW w AS (ORDER BY e.seq ROWS UNBOUNDED PRECEDING)
                  ORDER BY e.seq
                  LIMIT ${limit}
               ) sized
               WHERE sized.upto <= ${cap} OR sized.n = 1
             ) fits
             JOIN events e ON e.recipient_id = ${recipient} AND e.seq = fits.seq
             LEFT JOIN messages m ON m.id = e.message_id
             LEFT JOIN users su ON su.id = m.sender_id
             LEFT JOIN users ru ON ru.id = m.recipient_id`

const READ_ONE = `SELECT i.last_seq::text AS "lastSeq", i.pruned_through::text AS "prunedThrough", ev.*
         FROM inboxes i
         LEFT JOIN LATERAL (${streamEvents('i.user_id', '$2', '$3', '$4', 'i.last_seq')}
         ) ev ON true
        WHERE i.user_id = $1
        ORDER BY (ev.seq)::bigint`

const READ_MANY = `SELECT r.ord::text AS ord, i.last_seq::text AS "lastSeq", i.pruned_through::text AS "prunedThrough", ev.*
         FROM unnest($1::bigint[], $2::bigint[], $3::int[]) WITH ORDINALITY AS r(user_id, since, lim, ord)
         JOIN inboxes i ON i.user_id = r.user_id
         LEFT JOIN LATERAL (${streamEvents('r.user_id', 'r.since', 'r.lim', '$4', 'i.last_seq')}
         ) ev ON true
        ORDER BY r.ord, (ev.seq)::bigint`

export class EventRepository {
  private readonly maxBytes: number

  constructor(
    private readonly db: DataSource,
    options: {maxBytes?: number} = {},
  ) {
    this.maxBytes = options.maxBytes ?? READ_MAX_BYTES_DEFAULT
  }

  /**
   * The head of a stream (the last seq handed out, the last one pruned) and
   * up to `limit` events after `since`, at most `maxBytes` of them (but at
   * least one; see streamEvents). Reads asked for in the same turn of
   * the event loop (the polls one commit woke: a group message wakes up to a
   * thousand at once) share one statement.
   */
  read(userId: string, since: bigint, limit: number): Promise<StreamRead> {
    return new Promise((resolve, reject) => {
      this.pending.push({userId, since, limit, resolve, reject})
      if (this.pending.length === 1) setImmediate(() => void this.flush())
    })
  }

  private pending: PendingRead[] = []

  private async flush(): Promise<void> {
    const batch = this.pending
    this.pending = []
    const parts: PendingRead[][] = []
    for (let i = 0; i < batch.length; i += READ_BATCH_MAX) parts.push(batch.slice(i, i + READ_BATCH_MAX))
    // Parts run side by side, each on its own pool connection.
    await Promise.all(parts.map((part) => this.readPart(part)))
  }

  private async readPart(part: PendingRead[]): Promise<void> {
    try {
      const rows =
        part.length === 1
          ? await prepared<ReadRow>(this.db, 'events-read', READ_ONE, [part[0]!.userId, part[0]!.since.toString(), part[0]!.limit, this.maxBytes])
          : await prepared<ReadRow>(this.db, 'events-read-many', READ_MANY, [
              part.map((r) => r.userId),
              part.map((r) => r.since.toString()),
              part.map((r) => r.limit),
              this.maxBytes,
            ])
      const byOrd = new Map<number, ReadRow[]>()
      for (const row of rows) {
        const ord = Number(row.ord ?? 1)
        let list = byOrd.get(ord)
        if (!list) byOrd.set(ord, (list = []))
        list.push(row)
      }
      part.forEach((request, k) => {
        const found = byOrd.get(k + 1) ?? []
        const head = found[0]
        request.resolve({
          lastSeq: BigInt(head?.lastSeq ?? 0),
          prunedThrough: BigInt(head?.prunedThrough ?? 0),
          events: found.filter((row) => row.seq !== null),
        })
      })
    } catch (error) {
      for (const request of part) request.reject(error)
    }
  }


  /**
   * Deletes events older than the retention period and records, per stream,
   * the highest seq deleted: a cursor below it can no longer be served (410).
   */
  async prune(retentionMs: number): Promise<number> {
    const result = (await this.db.query(
      `WITH deleted AS (
         DELETE FROM events WHERE created_at < now() - make_interval(secs => $1 / 1000.0) RETURNING recipient_id, seq
       ), marks AS (
         SELECT recipient_id, max(seq) AS max_seq, count(*) AS n FROM deleted GROUP BY recipient_id
       ), updated AS (
         UPDATE inboxes i SET pruned_through = greatest(i.pruned_through, marks.max_seq)
           FROM marks WHERE i.user_id = marks.recipient_id RETURNING marks.n
       )
       SELECT coalesce(sum(n), 0)::int AS n FROM updated`,
      [retentionMs],
    )) as {n: number}[]
    return result[0]?.n ?? 0
  }
}
