import {randomUUID} from 'node:crypto'

import type {DataSource, EntityManager} from 'typeorm'

import type {MessageKind} from '../entities/message.js'
import type {Appended, AppendedEvent, EventToAppend} from './event-stream.repository.js'
import {MESSAGE_COLUMNS, type MessageRow} from './message-columns.js'
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
  /** The seq each of those streams gave the event (none for a duplicate). */
  appended: Appended[]
}

/**
 * How 1:1 sends share commits. A send that finds fewer than
 * DIRECT_STATEMENTS_IN_FLIGHT statements running starts its own at once (no
 * timer: on an idle server a lone send commits as fast as before); sends that
 * arrive while they run wait for one to end and then go together, in one
 * statement and one commit. Two in flight, not one, so that one batch's
 * statement runs while the other waits for its WAL flush: measured on the
 * repository alone, 10 senders in a closed loop got 20-25% more sends/s
 * with two than with one, 50 and 200 the same, for about 0.01 ms more of
 * PostgreSQL's CPU per send.
 */
const DIRECT_STATEMENTS_IN_FLIGHT = 2
/** Most sends in one statement: 256 took 12-30 ms here, commit included (~0.06 ms a send); more would only lengthen the wait of those behind. */
const DIRECT_BATCH_MAX_SENDS = 256
/** Most ciphertext in one statement (4 MiB: 64 full-size 64 KiB texts); a larger send still goes, alone. */
const DIRECT_BATCH_MAX_BYTES = 4 * 1024 * 1024

export interface DirectBatchOptions {
  /** Statements of 1:1 sends running at once (DIRECT_STATEMENTS_IN_FLIGHT). */
  inFlight?: number
  maxSends?: number
  maxBytes?: number
  /** Told the number of sends of every statement run, retries of a failed batch included. */
  onBatch?: (sends: number) => void
}

/** Counters of the 1:1 send statements since start. */
export interface DirectBatchStats {
  /** Statements run. */
  statements: number
  /** Sends they carried (a send retried alone after its batch failed counts twice). */
  sends: number
  /** Batches that failed and whose sends were retried one by one. */
  split: number
}

interface PendingSend {
  message: NewDirectMessage
  id: string
  resolve: (stored: StoredMessage | undefined) => void
  reject: (error: unknown) => void
}

/** Events that ride along with the 1:1 sends (appendEvents): one caller's, appended together. */
interface PendingEvents {
  events: EventToAppend[]
  /** Each event's payload as JSON, made once (the statement's parameter, and what the batch's byte cap counts). */
  payloads: string[]
  resolve: (appended: AppendedEvent[]) => void
  reject: (error: unknown) => void
}

type Pending = PendingSend | PendingEvents

const isSend = (item: Pending): item is PendingSend => 'message' in item

/** Most events riding in one statement (a request of read receipts carries at most 100). */
const BATCH_MAX_EVENTS = 2_000

/**
 * SQLSTATE classes after which a failed batch is retried one send at a time:
 * data exceptions (22) and integrity violations (23) come from one bad row (a
 * blob deleted meanwhile, a recipient gone), and a deadlock or serialization
 * failure (40) is worth one retry. Anything else (the database gone, a
 * statement timeout) would only fail again, slower: every send gets the error.
 */
const SPLIT_ON_SQLSTATE_CLASSES = new Set(['22', '23', '40'])

/** Whether a batch that failed with `error` is worth retrying one item at a time (SPLIT_ON_SQLSTATE_CLASSES). */
export function worthSplitting(error: unknown): boolean {
  const sqlstate = (error as {code?: unknown}).code
  return typeof sqlstate === 'string' && SPLIT_ON_SQLSTATE_CLASSES.has(sqlstate.slice(0, 2))
}

/**
 * Whether an error says the database cannot be reached (no connection from
 * the pool in time, refused, lost, shutting down) rather than refusing this
 * statement: then the sends still queued would only wait to fail the same
 * way, so they fail now (their clients retry), and a database that hangs
 * cannot pile up a queue that drains at one batch per connection timeout.
 */
function unreachable(error: unknown): boolean {
  const code = (error as {code?: unknown}).code
  if (typeof code !== 'string' || !/^[0-9A-Z]{5}$/.test(code)) return true // not from the server: pool timeout, ECONNREFUSED, ...
  return code.startsWith('08') || code.startsWith('57P')
}

/**
 * Whether a sender has another device (a second live session): then the
 * send also appends its event to the sender's own stream, a "sent copy" that
 * their other devices read (docs/architecture.md, "Devices"). Decided inside
 * the send's statement, on the hot path, so it must cost next to nothing: an
 * index probe of sessions_user_id_idx that stops at the second row. A
 * single-device sender pays that probe (about 0.015 ms of a 0.2-0.3 ms
 * statement in EXPLAIN ANALYZE) and nothing else; a flag on users would be as
 * cheap to read but one more thing that logins, logouts and expiry must keep right.
 */
const SENDER_HAS_OTHER_DEVICES = (sender: string) =>
  `(SELECT count(*) FROM (SELECT 1 FROM sessions s WHERE s.user_id = ${sender} AND s.expires_at > now() LIMIT 2) two) > 1`

/**
 * The 1:1 sends of one batch: each message is inserted unless its recipient
 * blocks its sender or its idempotency key was used before; then the inbox
 * rows of the recipients of what was inserted are locked in id order (as
 * EventStreamRepository.append does, so this cannot deadlock with a group
 * send or another batch) and held until the statement's commit; each is
 * bumped by its number of messages, and those take the seqs in the order the
 * sends arrived (`ord`), as do their `sent_at` (one microsecond apart, so
 * history, which orders by (sent_at, id), agrees with the streams). A sender
 * with another device is a target too (their sent copy), in the same locks.
 *
 * `withEvents`: other events ride along ($9-$12: per event its recipient,
 * type, and the sender whose block by the recipient drops it; $11 the JSON
 * array of their payloads): read receipts and peer offers (appendEvents).
 * They take their seqs under the same inbox locks, after the batch's messages
 * in each stream, so they add rows to a commit that runs anyway instead of a
 * transaction of their own that would lock most inboxes until its commit, and
 * hold up every send to them meanwhile (docs/architecture.md, "Receipts").
 * Rows come back two ways then: a message's (`xord` null), or an event's, by
 * its place in the event arrays (`xord`); an event dropped by a block has none.
 * Without, the statement is the plain send's, with nothing of receipts.
 */
const storeDirectBatch = (withEvents: boolean) => `WITH batch AS (
         SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::uuid[], $8::text[])
                WITH ORDINALITY AS b(id, sender_id, recipient_id, conversation, kind, ciphertext, blob_id, idempotency_key, ord)
       ), inserted AS (
         INSERT INTO messages (id, sender_id, recipient_id, conversation, kind, ciphertext, blob_id, idempotency_key, sent_at)
         SELECT b.id, b.sender_id, b.recipient_id, b.conversation, b.kind, b.ciphertext, b.blob_id, b.idempotency_key,
                now() + interval '1 microsecond' * (b.ord - 1)
           FROM batch b
          WHERE NOT EXISTS (SELECT 1 FROM blocks bl WHERE bl.blocker_id = b.recipient_id AND bl.blocked_id = b.sender_id)
         ON CONFLICT (sender_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
         RETURNING id, sender_id, recipient_id, sent_at
       ),${
         withEvents
           ? ` extra AS (
         SELECT t.user_id, t.type, p.payload, t.blocked_by, t.ord
           FROM unnest($9::bigint[], $10::text[], $12::bigint[]) WITH ORDINALITY AS t(user_id, type, blocked_by, ord)
           JOIN jsonb_array_elements($11::jsonb) WITH ORDINALITY AS p(payload, ord) ON p.ord = t.ord
          WHERE t.blocked_by IS NULL OR NOT EXISTS (SELECT 1 FROM blocks bl WHERE bl.blocker_id = t.user_id AND bl.blocked_id = t.blocked_by)
       ),`
           : ''
       } targets AS (
         SELECT ins.id, ins.recipient_id AS user_id, b.ord, NULL::bigint AS xord FROM inserted ins JOIN batch b ON b.id = ins.id
         UNION ALL
         SELECT ins.id, ins.sender_id, b.ord, NULL FROM inserted ins JOIN batch b ON b.id = ins.id
          WHERE ins.sender_id <> ins.recipient_id AND ${SENDER_HAS_OTHER_DEVICES('ins.sender_id')}${
            withEvents
              ? `
         UNION ALL
         SELECT NULL, x.user_id, 1000000 + x.ord, x.ord FROM extra x`
              : ''
          }
       ), locked AS (
         SELECT user_id FROM inboxes WHERE user_id IN (SELECT user_id FROM targets) ORDER BY user_id FOR UPDATE
       ), counts AS (
         SELECT user_id, count(*) AS n FROM targets GROUP BY user_id
       ), bumped AS (
         UPDATE inboxes i SET last_seq = i.last_seq + c.n FROM locked l JOIN counts c ON c.user_id = l.user_id
          WHERE i.user_id = l.user_id
         RETURNING i.user_id, i.last_seq, c.n
       ), numbered AS (
         SELECT t.id, t.user_id, t.xord, bu.last_seq - bu.n + row_number() OVER (PARTITION BY t.user_id ORDER BY t.ord) AS seq
           FROM targets t JOIN bumped bu ON bu.user_id = t.user_id
       ), appended AS (
         ${
           withEvents
             ? `INSERT INTO events (recipient_id, seq, type, message_id, payload)
         SELECT n.user_id, n.seq, coalesce(x.type, 'message'), n.id, x.payload FROM numbered n LEFT JOIN extra x ON x.ord = n.xord`
             : `INSERT INTO events (recipient_id, seq, type, message_id) SELECT n.user_id, n.seq, 'message', n.id FROM numbered n`
         }
       )
       SELECT ins.id, ins.sent_at AS "sentAt", a.seq::text AS seq, c.seq::text AS "senderSeq", NULL::int AS xord
         FROM inserted ins
         LEFT JOIN numbered a ON a.id = ins.id AND a.user_id = ins.recipient_id
         LEFT JOIN numbered c ON c.id = ins.id AND c.user_id = ins.sender_id AND ins.sender_id <> ins.recipient_id${
           withEvents
             ? `
       UNION ALL
       SELECT NULL, now(), n.seq::text, NULL, n.xord::int FROM numbered n WHERE n.xord IS NOT NULL`
             : ''
         }`

const STORE_DIRECT_BATCH = storeDirectBatch(false)
const STORE_DIRECT_BATCH_WITH_EVENTS = storeDirectBatch(true)

/**
 * The same for a batch of one send, the usual case on a quiet server: the
 * batch statement is planned anew each time (its arrays' lengths are unknown
 * to a generic plan, so PostgreSQL keeps custom plans, about 0.3 ms each),
 * while this one runs on its generic plan.
 */
const STORE_DIRECT_ONE = `WITH inserted AS (
         INSERT INTO messages (id, sender_id, recipient_id, conversation, kind, ciphertext, blob_id, idempotency_key)
         SELECT $1, $2, $3, $4, $5, $6, $7, $8
          WHERE NOT EXISTS (SELECT 1 FROM blocks WHERE blocker_id = $3 AND blocked_id = $2)
         ON CONFLICT (sender_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
         RETURNING id, sent_at
       ), locked AS (
         SELECT user_id FROM inboxes
          WHERE user_id = ANY(ARRAY[$3::bigint, CASE WHEN $2::bigint <> $3::bigint AND ${SENDER_HAS_OTHER_DEVICES('$2::bigint')} THEN $2::bigint END])
            AND EXISTS (SELECT 1 FROM inserted)
          ORDER BY user_id FOR UPDATE
       ), bumped AS (
         UPDATE inboxes i SET last_seq = i.last_seq + 1 FROM locked l WHERE i.user_id = l.user_id
         RETURNING i.user_id, i.last_seq
       ), appended AS (
         INSERT INTO events (recipient_id, seq, type, message_id) SELECT user_id, last_seq, 'message', $1 FROM bumped
         RETURNING recipient_id, seq
       )
       SELECT ins.id, ins.sent_at AS "sentAt", (SELECT seq::text FROM appended WHERE recipient_id = $3::bigint) AS seq,
              (SELECT seq::text FROM appended WHERE recipient_id = $2::bigint AND $2::bigint <> $3::bigint) AS "senderSeq"
         FROM inserted ins`

/** The statements' SQL, for tests that check what a send runs. */
export const DIRECT_SEND_STATEMENTS = {one: STORE_DIRECT_ONE, batch: STORE_DIRECT_BATCH, batchWithEvents: STORE_DIRECT_BATCH_WITH_EVENTS}

export class MessageRepository {
  private readonly inFlight: number
  private readonly maxSends: number
  private readonly maxBytes: number
  private readonly onBatch: ((sends: number) => void) | undefined
  private queue: Pending[] = []
  private running = 0
  private readonly counters: DirectBatchStats = {statements: 0, sends: 0, split: 0}

  constructor(
    private readonly db: DataSource,
    options: DirectBatchOptions = {},
  ) {
    this.inFlight = Math.max(1, options.inFlight ?? DIRECT_STATEMENTS_IN_FLIGHT)
    this.maxSends = Math.max(1, options.maxSends ?? DIRECT_BATCH_MAX_SENDS)
    this.maxBytes = options.maxBytes ?? DIRECT_BATCH_MAX_BYTES
    this.onBatch = options.onBatch
  }

  /**
   * A one-to-one message, stored with its recipient's event in one statement
   * that it shares with the 1:1 sends that arrived while earlier statements
   * ran (see DIRECT_STATEMENTS_IN_FLIGHT): committed when this resolves. A
   * send that stores nothing finds the earlier one with its key, or the
   * block, with a second query. Undefined: refused, the recipient blocks the
   * sender. Two sends with the same key never share a statement (the second
   * waits for the next one and finds the first).
   */
  storeDirect(message: NewDirectMessage): Promise<StoredMessage | undefined> {
    return new Promise((resolve, reject) => {
      this.queue.push({message, id: randomUUID(), resolve, reject})
      this.startBatches()
    })
  }

  /**
   * Appends events that differ per recipient (read receipts, peer offers) by
   * appendEach's rule, riding along with the 1:1 sends: in the next statement
   * of sends, or in one of their own when none are waiting, under the same
   * limit of statements in flight (STORE_DIRECT_BATCH_WITH_EVENTS). Resolves
   * once committed, with the events appended (as appendEach returns them: an
   * event whose recipient blocks its `unlessBlockedBy` is left out). The
   * events of one call share a statement.
   */
  appendEvents(events: EventToAppend[]): Promise<AppendedEvent[]> {
    if (events.length === 0) return Promise.resolve([])
    return new Promise((resolve, reject) => {
      this.queue.push({events, payloads: events.map((event) => JSON.stringify(event.payload)), resolve, reject})
      this.startBatches()
    })
  }

  /** How many statements the 1:1 sends took. */
  batchStats(): DirectBatchStats {
    return {...this.counters}
  }

  private startBatches(): void {
    while (this.running < this.inFlight && this.queue.length > 0) {
      const batch = this.takeBatch()
      this.running++
      void this.runBatch(batch)
        .catch((error: unknown) => {
          for (const send of batch) send.reject(error) // no send is left waiting (a settled one ignores this)
        })
        .finally(() => {
          this.running--
          this.startBatches()
        })
    }
  }

  /**
   * The longest run of waiting sends (and events riding along) within the
   * bounds, in arrival order; a reused key waits for the next batch.
   */
  private takeBatch(): Pending[] {
    const batch: Pending[] = []
    const deferred: Pending[] = []
    const keys = new Set<string>()
    let bytes = 0
    let sends = 0
    let events = 0
    let i = 0
    for (; i < this.queue.length && sends < this.maxSends; i++) {
      const item = this.queue[i]!
      if (!isSend(item)) {
        const size = item.payloads.reduce((sum, payload) => sum + payload.length, 0)
        if (batch.length > 0 && (events + item.events.length > BATCH_MAX_EVENTS || bytes + size > this.maxBytes)) break
        events += item.events.length
        bytes += size
        batch.push(item)
        continue
      }
      const {senderId, idempotencyKey, ciphertext} = item.message
      const key = idempotencyKey === null ? undefined : `${senderId}\n${idempotencyKey}`
      if (key !== undefined && keys.has(key)) {
        deferred.push(item)
        continue
      }
      if (batch.length > 0 && bytes + ciphertext.length > this.maxBytes) break
      if (key !== undefined) keys.add(key)
      bytes += ciphertext.length
      sends++
      batch.push(item)
    }
    this.queue = deferred.length > 0 ? [...deferred, ...this.queue.slice(i)] : this.queue.slice(i)
    return batch
  }

  private async runBatch(items: Pending[]): Promise<void> {
    const batch = items.filter(isSend)
    const riders = items.filter((item): item is PendingEvents => !isSend(item))
    this.counters.statements++
    this.counters.sends += batch.length
    if (batch.length > 0) this.onBatch?.(batch.length)
    let rows: {id: string; sentAt: Date; seq: string | null; senderSeq: string | null; xord?: number | null}[]
    // The sends' columns, as arrays: the parameters $1-$8 of both batch statements.
    const sends = () => [
      batch.map((s) => s.id),
      batch.map((s) => s.message.senderId),
      batch.map((s) => s.message.recipientId),
      batch.map((s) => s.message.conversation),
      batch.map((s) => s.message.kind),
      batch.map((s) => s.message.ciphertext),
      batch.map((s) => s.message.blobId),
      batch.map((s) => s.message.idempotencyKey),
    ]
    try {
      if (riders.length > 0) {
        rows = await prepared(this.db, 'message-store-direct-batch-events', STORE_DIRECT_BATCH_WITH_EVENTS, [
          ...sends(),
          riders.flatMap((r) => r.events.map((event) => event.recipientId)),
          riders.flatMap((r) => r.events.map((event) => event.type)),
          // One JSON array, not a jsonb[]: node-pg would escape each ~1 KiB payload into an array literal, and PostgreSQL unescape it.
          `[${riders.flatMap((r) => r.payloads).join(',')}]`,
          riders.flatMap((r) => r.events.map((event) => event.unlessBlockedBy ?? null)),
        ])
      } else if (batch.length === 1) {
        const {id, message: m} = batch[0]!
        rows = await prepared(this.db, 'message-store-direct', STORE_DIRECT_ONE, [
          id, m.senderId, m.recipientId, m.conversation, m.kind, m.ciphertext, m.blobId, m.idempotencyKey,
        ])
      } else {
        rows = await prepared(this.db, 'message-store-direct-batch', STORE_DIRECT_BATCH, sends())
      }
    } catch (error) {
      if (items.length === 1 || !worthSplitting(error)) {
        for (const item of items) item.reject(error)
        if (unreachable(error)) for (const item of this.queue.splice(0)) item.reject(error)
        return
      }
      // One by one, in arrival order: the bad send (or caller's events) gets its error, the others commit.
      this.counters.split++
      for (const item of items) await this.runBatch([item])
      return
    }
    if (riders.length > 0) this.settleRiders(riders, rows)
    const byId = new Map(rows.map((row) => [row.id, row]))
    for (const send of batch) {
      const row = byId.get(send.id)
      const {recipientId, senderId} = send.message
      if (row) {
        const appended: Appended[] = row.seq === null ? [] : [{recipientId, seq: BigInt(row.seq)}]
        // The sender's own copy, for their other devices (SENDER_HAS_OTHER_DEVICES).
        if (row.senderSeq !== null) appended.push({recipientId: senderId, seq: BigInt(row.senderSeq)})
        send.resolve({
          id: send.id,
          sentAt: row.sentAt,
          duplicate: false,
          sameContent: true,
          deliveredTo: row.senderSeq === null ? [recipientId] : [recipientId, senderId],
          appended,
        })
      } else {
        // Not stored: its follow-up runs on its own, outside the batch's slot.
        this.whyNotStored(send.message).then(send.resolve, send.reject)
      }
    }
  }

  /** Resolves each caller's events with where they landed (rows with an `xord`: their place in the batch's event arrays). */
  private settleRiders(riders: PendingEvents[], rows: {seq: string | null; sentAt: Date; xord?: number | null}[]): void {
    const landed = new Map<number, {seq: string; at: Date}>()
    for (const row of rows) if (row.xord !== null && row.xord !== undefined) landed.set(row.xord, {seq: row.seq!, at: row.sentAt})
    let place = 0
    for (const rider of riders) {
      const appended: AppendedEvent[] = []
      for (const [i, event] of rider.events.entries()) {
        const at = landed.get(++place)
        if (at) appended.push({recipientId: event.recipientId, seq: at.seq, type: event.type, payload: event.payload, payloadJson: rider.payloads[i], at: at.at})
      }
      rider.resolve(appended)
    }
  }

  private async whyNotStored(message: NewDirectMessage): Promise<StoredMessage | undefined> {
    // A retry of a send accepted before the block still answers with its first result.
    const earlier = message.idempotencyKey ? await this.findByIdempotencyKey(this.db.manager, message) : undefined
    if (earlier) return earlier
    const blocked = (await this.db.query('SELECT 1 FROM blocks WHERE blocker_id = $1 AND blocked_id = $2', [message.recipientId, message.senderId])) as unknown[]
    if (blocked.length > 0) return undefined
    throw new Error('idempotency conflict without a stored message')
  }

  /**
   * A group message, inside the caller's transaction (which also appends its
   * events); undefined if a concurrent send with the same idempotency key
   * committed first (this insert waited for it; find it with findByIdempotencyKey).
   */
  async insertGroup(tx: EntityManager, message: NewGroupMessage): Promise<{id: string; sentAt: Date} | undefined> {
    const id = randomUUID()
    const [row] = (await tx.query(
      `INSERT INTO messages (id, sender_id, group_id, epoch, conversation, kind, ciphertext, blob_id, idempotency_key)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
       ON CONFLICT (sender_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
       RETURNING sent_at AS "sentAt"`,
      [id, message.senderId, message.groupId, message.epoch, message.conversation, message.kind, message.ciphertext, message.blobId,
        message.idempotencyKey],
    )) as {sentAt: Date}[]
    return row ? {id, sentAt: row.sentAt} : undefined
  }

  /** The message this sender already sent with this message's idempotency key, as the answer to its retry. */
  async findByIdempotencyKey(tx: EntityManager, message: NewDirectMessage | NewGroupMessage): Promise<StoredMessage | undefined> {
    const recipientId = 'recipientId' in message ? message.recipientId : null
    const groupId = 'groupId' in message ? message.groupId : null
    const [row] = (await tx.query(
      `SELECT id, sent_at AS "sentAt",
              (recipient_id IS NOT DISTINCT FROM $3::bigint AND group_id IS NOT DISTINCT FROM $4::uuid
               AND ciphertext = $5 AND kind = $6 AND blob_id IS NOT DISTINCT FROM $7::uuid) AS "sameContent"
         FROM messages WHERE sender_id = $1 AND idempotency_key = $2`,
      [message.senderId, message.idempotencyKey, recipientId, groupId, message.ciphertext, message.kind, message.blobId],
    )) as {id: string; sentAt: Date; sameContent: boolean}[]
    return row ? {...row, duplicate: true, deliveredTo: [], appended: []} : undefined
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

  /** SENDER_HAS_OTHER_DEVICES for a group send, in its transaction (one index probe beside the group's locks and inserts). */
  async hasOtherDevices(tx: EntityManager, userId: string): Promise<boolean> {
    const [row] = (await tx.query(`SELECT ${SENDER_HAS_OTHER_DEVICES('$1::bigint')} AS yes`, [userId])) as {yes: boolean}[]
    return row!.yes
  }

  async exists(conversation: string, id: string): Promise<boolean> {
    const rows = (await this.db.query('SELECT 1 FROM messages WHERE id = $1 AND conversation = $2', [id, conversation])) as unknown[]
    return rows.length > 0
  }
}
