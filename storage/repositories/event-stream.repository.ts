import type {DataSource, EntityManager} from 'typeorm'

import {housekeeping} from '../data-source.js'
import {MESSAGE_COLUMNS, type MessageRow} from './message-columns.js'
import {prepared} from './prepared.js'

/**
 * Every user's event stream: `inboxes` holds its head (`last_seq`, and
 * `pruned_through` for retention), `events` its entries. All the SQL that
 * appends to, reads, watches or prunes the streams is here, except the
 * one-statement 1:1 send (MessageRepository.storeDirect), which appends its
 * events in the statement that stores its messages, by the same rule as
 * append() below: inbox rows locked in id order and held until commit
 * (docs/architecture.md, "Why the cursor cannot skip").
 */

export interface EventRow extends Partial<MessageRow> {
  seq: string
  type: string
  payload: Record<string, unknown> | null
  /** When the event was appended (a message event has the message's `sentAt` instead). */
  at: Date
}

export interface StreamRead {
  lastSeq: bigint
  prunedThrough: bigint
  events: EventRow[]
}

/** Where an appended event landed: its recipient's stream, at `seq`. */
export interface Appended {
  recipientId: string
  seq: bigint
}

/** An event appendEach() appended, as a read of the stream would return it, and whose stream. */
export interface AppendedEvent extends EventRow {
  recipientId: string
  /** `payload` as JSON, when the appender made it already (it is then not made again for the wire). */
  payloadJson?: string
}

/** An event for one stream (appendEach); `unlessBlockedBy`: dropped if its recipient blocks this user. */
export interface EventToAppend {
  recipientId: string
  type: string
  payload: Record<string, unknown>
  unlessBlockedBy?: string
}

export interface NewEvent {
  type: string
  messageId?: string
  payload?: Record<string, unknown>
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

export class EventStreamRepository {
  private readonly maxBytes: number

  constructor(
    private readonly db: DataSource,
    options: {maxBytes?: number} = {},
  ) {
    this.maxBytes = options.maxBytes ?? READ_MAX_BYTES_DEFAULT
  }

  /**
   * Appends one event to each recipient's stream, inside the caller's
   * transaction, and says which seq each got (in recipient id order). The
   * inbox rows are locked in id order (two appends, or an append and a 1:1
   * send, cannot deadlock) and stay locked until the caller commits: the next
   * writer to the same stream waits and numbers after this one, so each
   * stream becomes visible gap-free and in seq order. The caller wakes the
   * recipients' polls after its commit.
   */
  async append(tx: EntityManager, recipientIds: string[], event: NewEvent): Promise<Appended[]> {
    if (recipientIds.length === 0) return []
    const rows = (await tx.query(
      `WITH locked AS (
         SELECT user_id FROM inboxes WHERE user_id = ANY($1::bigint[]) ORDER BY user_id FOR UPDATE
       ), bumped AS (
         UPDATE inboxes i SET last_seq = i.last_seq + 1 FROM locked l WHERE i.user_id = l.user_id
         RETURNING i.user_id, i.last_seq
       ), appended AS (
         INSERT INTO events (recipient_id, seq, type, message_id, payload)
         SELECT user_id, last_seq, $2, $3, $4 FROM bumped
         RETURNING recipient_id, seq
       )
       SELECT recipient_id::text AS "recipientId", seq::text AS seq FROM appended ORDER BY recipient_id`,
      [recipientIds, event.type, event.messageId ?? null, event.payload ? JSON.stringify(event.payload) : null],
    )) as {recipientId: string; seq: string}[]
    return rows.map((row) => ({recipientId: row.recipientId, seq: BigInt(row.seq)}))
  }

  /**
   * Appends events that differ per recipient (receipts: each sender gets its
   * own list), several per recipient if need be, inside the caller's
   * transaction, by append()'s rule: the inbox rows locked in id order and
   * held until commit; a recipient's events take consecutive seqs in the
   * order given. Returns them as appended (seq, time), in recipient id and
   * seq order, to be handed to listeners without reading them back: the
   * statement returns only where each landed (by its place in the input), and
   * the payloads are the caller's own objects, not parsed back from JSON (an
   * event's `created_at` is its transaction's now()). An
   * event with `unlessBlockedBy` is dropped when its recipient blocks that
   * user (in the same statement: no extra round trip). One statement, so
   * outside a transaction (`tx` the DataSource) it commits on its own.
   */
  async appendEach(tx: EntityManager | DataSource, events: EventToAppend[]): Promise<AppendedEvent[]> {
    if (events.length === 0) return []
    const rows = (await tx.query(
      `WITH input AS (
         SELECT * FROM unnest($1::bigint[], $2::text[], $3::jsonb[], $4::bigint[]) WITH ORDINALITY AS t(user_id, type, payload, blocked_by, ord)
          WHERE t.blocked_by IS NULL OR NOT EXISTS (SELECT 1 FROM blocks bl WHERE bl.blocker_id = t.user_id AND bl.blocked_id = t.blocked_by)
       ), counts AS (
         SELECT user_id, count(*) AS n FROM input GROUP BY user_id
       ), locked AS (
         SELECT user_id FROM inboxes WHERE user_id IN (SELECT user_id FROM counts) ORDER BY user_id FOR UPDATE
       ), bumped AS (
         UPDATE inboxes i SET last_seq = i.last_seq + c.n FROM locked l JOIN counts c ON c.user_id = l.user_id
          WHERE i.user_id = l.user_id
         RETURNING i.user_id, i.last_seq, c.n
       ), numbered AS (
         SELECT t.ord, t.user_id, t.type, t.payload, b.last_seq - b.n + row_number() OVER (PARTITION BY t.user_id ORDER BY t.ord) AS seq
           FROM input t JOIN bumped b ON b.user_id = t.user_id
       ), appended AS (
         INSERT INTO events (recipient_id, seq, type, payload) SELECT user_id, seq, type, payload FROM numbered
       )
       SELECT ord::int AS ord, seq::text AS seq, now() AS "at" FROM numbered ORDER BY user_id, seq`,
      [
        events.map((event) => event.recipientId),
        events.map((event) => event.type),
        events.map((event) => JSON.stringify(event.payload)),
        events.map((event) => event.unlessBlockedBy ?? null),
      ],
    )) as {ord: number; seq: string; at: Date}[]
    return rows.map((row) => {
      const event = events[row.ord - 1]!
      return {recipientId: event.recipientId, seq: row.seq, type: event.type, payload: event.payload, at: row.at}
    })
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

  /**
   * The last seq of each of these streams (users without a stream are left
   * out), in one statement: what the re-check of parked polls compares their
   * cursors with. One index lookup per user.
   */
  async heads(userIds: string[]): Promise<Map<string, bigint>> {
    const heads = new Map<string, bigint>()
    if (userIds.length === 0) return heads
    const rows = await prepared<{id: string; last: string}>(
      this.db,
      'events-heads',
      'SELECT user_id::text AS id, last_seq::text AS last FROM inboxes WHERE user_id = ANY($1::bigint[])',
      [userIds],
    )
    for (const row of rows) heads.set(row.id, BigInt(row.last))
    return heads
  }

  /**
   * Deletes events older than the retention period and records, per stream,
   * the highest seq deleted: a cursor below it can no longer be served (410).
   */
  async prune(retentionMs: number): Promise<number> {
    const result = (await housekeeping(this.db, (query) =>
      query(
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
      ),
    )) as {n: number}[]
    return result[0]?.n ?? 0
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
}
