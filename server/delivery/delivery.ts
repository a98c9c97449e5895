import type {Logger} from 'pino'

import type {AckSink} from './acks.js'
import type {StreamRead} from '../../storage/repositories/event-stream.repository.js'
import {CursorError, UnavailableError} from '../services/errors.js'
import {PerUserSlots} from '../services/per-user-slots.js'
import type {Cancellation} from './cancel.js'
import {isLazyEvent, type Listener, type ReadReason, type WireEvent} from './listener.js'
import {Rechecker} from './recheck.js'
import {ListenerRegistry} from './registry.js'
import {RateMeter} from './throughput.js'
import {type CommittedMessage, wireEventOfRow, wireEventsOf} from './views.js'

/** What delivery reads: the event stream (storage/repositories/event-stream.repository.ts). */
export interface StreamSource {
  read(userId: string, since: bigint, limit: number): Promise<StreamRead>
  /** The last seq of each of these users' streams. */
  heads(userIds: string[]): Promise<Map<string, bigint>>
}

/** Where this server's users listen, recorded for the peers that push to them (./peers.ts). */
export interface PresenceSink {
  seen(userId: string): void
  stop(): Promise<void>
}

/** The peers that hold other users' listeners (./peers.ts): told of commits made here. */
export interface PeerSink {
  /** `lazy`: receipts and presence events, handed over as they are (the peer's polls hold them). */
  push(wake: string[], messages: CommittedMessage[], lazy?: {recipientId: string; event: WireEvent}[]): void
  stop(): Promise<void>
}

/** Where a stream writes (./sse.ts): the HTTP answer, or a test's recorder. */
export interface StreamSink {
  /** The stream is open from `next` on. */
  open(next: bigint): void
  write(events: WireEvent[]): void
  heartbeat(): void
  /** Ends the stream, telling the client why when there is something to tell. */
  end(reason?: {event: 'superseded'} | {event: 'problem'; problem: unknown}): void
  /** More than a page is written and not yet taken by the client: wait for it before writing more. */
  readonly backlogged: boolean
  /** Resolves true when the client has taken what was written, false after `timeoutMs` or when it went away. */
  drained(timeoutMs: number): Promise<boolean>
}

export interface DeliveryOptions {
  /** Open polls and streams per user on this server (FASTCHAT_MAX_POLLS_PER_USER). */
  maxPerUser?: number
  /** Event reads of one user in flight at once (FASTCHAT_POLL_READS_PER_USER). */
  readsPerUser?: number
  /** Most bytes of events in one answer or one stream write (FASTCHAT_POLL_MAX_BYTES). */
  maxBytes?: number
  /** A stream with nothing to say writes a heartbeat this often (FASTCHAT_STREAM_HEARTBEAT_MS). */
  heartbeatMs?: number
  /** How often parked listeners re-read their stream heads (FASTCHAT_RECHECK_MS); 0: never. */
  recheckMs?: number
  /** How long a poll whose only news is receipts or presence waits for something else to answer with (LAZY_EVENTS_MS); 0: answers at once. */
  lazyEventsMs?: number
  /** How long what is committed for a user between two polls is kept for the next (MAILBOX_KEEP_MS); 0: not kept. */
  mailboxMs?: number
}

export interface DeliveryParts {
  stream: StreamSource
  logger: Logger
  presence?: PresenceSink
  peers?: PeerSink
  /** Told what each poll and stream acknowledged, for delivered receipts (./acks.ts); absent when they are off. */
  acks?: AckSink
}

export interface PollAnswer {
  events: WireEvent[]
  next: bigint
}

/** The JSON of a long-poll's answer, `{events, next}`, from the events' ready-made JSON. */
export const pollAnswerJson = (answer: PollAnswer) => `{"events":[${answer.events.map((event) => event.json).join(',')}],"next":${answer.next}}`

const draining = () => new UnavailableError('FC_DRAINING', 'This server is shutting down; ask the superserver for another one.', 0)

/**
 * How long a listener handed an event past a gap (seq N+1 before N) waits
 * for the missing one before it reads the stream: two commits for the same
 * user resolve in either order, and one of them may come by a peer's push,
 * so it usually arrives from memory too. 10 ms was too short on a busy
 * machine (event loops late by tens of milliseconds): in the closed-loop
 * bench ~120 reads a second were made for predecessors that came soon after.
 * Longer only adds latency to a push that was lost.
 */
export const GAP_GRACE_MS = 50

/**
 * A stream whose client takes nothing of what is written for this long is
 * ended (it resumes from its cursor); while it waits, what commits meanwhile
 * is held up to the listener's cap, then read from the stream instead.
 */
export const STREAM_DRAIN_TIMEOUT_MS = 30_000

/** Users whose last read is remembered; past this all are forgotten (which only costs each a read). */
const MAX_REMEMBERED_READS = 200_000
/**
 * Reads of one user's stream in flight at once: each may hold up to the byte
 * cap of events in memory, so one account opening many polls waits for its
 * own turns instead of multiplying that (hole 5 of issue 12).
 */
const READS_PER_USER_DEFAULT = 2
export const HEARTBEAT_MS_DEFAULT = 15_000
/**
 * How long a long-poll whose only news is receipts or presence events waits
 * before answering with them (isLazyEvent): in a busy conversation they ride
 * along with the next message, and the poll answer and new poll each would
 * cost alone are saved. One second: a tick that a person does not notice,
 * and what `send --wait` adds at most.
 */
export const LAZY_EVENTS_MS = 1_000
const MAX_BYTES_DEFAULT = 1024 * 1024

/**
 * Delivery on one chat server (DESIGN.md, "Delivery"; docs/architecture.md):
 * the polls and streams open here, what wakes them, and what they answer.
 * After a commit here, `deliver` hands the committed events to this server's
 * own listeners and to the peers holding the recipients' (`announce` for
 * events that must be read back); a peer's push arrives through `fromPeer`;
 * a listener whose cursor continues right before what it was handed answers
 * from memory, any other reads the stream. The re-check (./recheck.ts) is the
 * fallback for a push that was lost: it costs latency, never a message.
 */
export class Delivery {
  readonly registry: ListenerRegistry
  /** Events committed through this server, and handed out by its listeners, per second (for the registry). */
  readonly committed = new RateMeter()
  readonly delivered = new RateMeter()
  /** Listeners woken by the re-check rather than by a push: each one is a lost or late wake-up. */
  recovered = 0
  /** Answers made from what a commit handed over, and answers that read the stream. */
  readonly answers = {fromMemory: 0, fromStream: 0}
  /** Reads of the stream for listeners, by why they could not take what they were handed (ReadReason). */
  readonly readsBy: Record<ReadReason, number> = {start: 0, woken: 0, recheck: 0, overflow: 0, gap: 0, more: 0}
  /** Reads made because a handed-over event's predecessor never came within GAP_GRACE_MS. */
  get gapReads(): number {
    return this.readsBy.gap
  }

  private readonly reads: PerUserSlots
  private readonly maxBytes: number
  readonly heartbeatMs: number
  private readonly lazyMs: number
  private readonly rechecker: Rechecker | undefined
  /** Per user: the cursor the last read here ended at, and the registry's version for the user before that read. */
  private readonly lastRead = new Map<string, {next: bigint; version: number}>()

  constructor(
    private readonly parts: DeliveryParts,
    options: DeliveryOptions = {},
  ) {
    this.registry = new ListenerRegistry(options.maxPerUser, options.mailboxMs)
    this.reads = new PerUserSlots(options.readsPerUser ?? READS_PER_USER_DEFAULT)
    this.maxBytes = options.maxBytes ?? MAX_BYTES_DEFAULT
    this.heartbeatMs = options.heartbeatMs ?? HEARTBEAT_MS_DEFAULT
    this.lazyMs = options.lazyEventsMs ?? LAZY_EVENTS_MS
    const recheckMs = options.recheckMs ?? 500
    this.rechecker =
      recheckMs > 0
        ? new Rechecker(
            {parked: () => this.registry.parked(), heads: (ids) => parts.stream.heads(ids), behind: (ids) => this.recover(ids)},
            recheckMs,
            parts.logger,
          )
        : undefined
  }

  start(): void {
    this.rechecker?.start()
  }

  // --- what commits tell it ---

  /** After a commit here of events that listeners must read (group changes): wake them here and on peers. */
  announce(userIds: string[]): void {
    if (userIds.length === 0) return
    this.committed.mark(userIds.length)
    this.registry.wake(userIds)
    this.parts.peers?.push(userIds, [])
  }

  /** After a commit here of messages: hand them to the listeners here and on peers, as they are. */
  deliver(messages: CommittedMessage[]): void {
    let count = 0
    for (const message of messages) count += message.to.length
    if (count === 0) return
    this.committed.mark(count)
    this.registry.offer(wireEventsOf(messages))
    this.parts.peers?.push([], messages)
  }

  /**
   * After a commit here of events other than messages (receipts, peer
   * offers), with what a read of the stream would return: handed to the
   * listeners here as they are (no read back), and pushed to the peers'.
   */
  deliverEvents(events: {recipientId: string; seq: string; type: string; payload: Record<string, unknown> | null; payloadJson?: string; at: Date}[]): void {
    if (events.length === 0) return
    this.committed.mark(events.length)
    const byUser = new Map<string, WireEvent[]>()
    for (const event of events) {
      let list = byUser.get(event.recipientId)
      if (!list) byUser.set(event.recipientId, (list = []))
      list.push(wireEventOfRow(event))
    }
    this.handOver(byUser)
    // Handed to the peers' listeners as they are too (no read there).
    const lazy: {recipientId: string; event: WireEvent}[] = []
    for (const [recipientId, list] of byUser) for (const event of list) lazy.push({recipientId, event})
    this.parts.peers?.push([], [], lazy)
  }

  /** A peer's push: its commits, as events or as wake-ups; never passed on again. */
  fromPeer(wake: string[], messages: CommittedMessage[], lazy: Map<string, WireEvent[]> = new Map()): void {
    if (wake.length > 0) this.registry.wake(wake)
    if (messages.length > 0) this.registry.offer(wireEventsOf(messages))
    if (lazy.size > 0) this.handOver(lazy)
  }

  /**
   * Events other than messages, handed to the listeners here: receipts and
   * presence held for the next message or the lazy delay (Listener.hold), the
   * rest (peer offers) offered at once, as messages are.
   */
  private handOver(byUser: Map<string, WireEvent[]>): void {
    const lazy = new Map<string, WireEvent[]>()
    const prompt = new Map<string, WireEvent[]>()
    for (const [userId, events] of byUser) {
      for (const event of events) {
        const into = isLazyEvent(event.type) ? lazy : prompt
        let list = into.get(userId)
        if (!list) into.set(userId, (list = []))
        list.push(event)
      }
    }
    if (lazy.size > 0) this.registry.hold(lazy, this.lazyMs)
    if (prompt.size > 0) this.registry.offer(prompt)
  }

  private recover(userIds: string[]): void {
    this.recovered += userIds.length
    this.registry.wake(userIds, 'recheck')
  }

  // --- what listeners get ---

  private remember(userId: string, next: bigint, version: number): void {
    if (this.lastRead.size > MAX_REMEMBERED_READS) this.lastRead.clear()
    this.lastRead.set(userId, {next, version})
  }

  /**
   * Reads the stream after `since` for a listener (waiting for one of the
   * user's read slots first). Undefined when the listener went away or was
   * replaced meanwhile. Throws CursorError for a cursor the stream cannot serve.
   */
  private async read(listener: Listener, since: bigint, limit: number, signal: Cancellation, reason: ReadReason): Promise<{events: WireEvent[]; more: boolean} | undefined> {
    const {userId} = listener
    this.readsBy[reason]++
    const release = await this.reads.acquire(userId, signal)
    if (!release || listener.superseded) {
      release?.()
      return undefined
    }
    // Cleared before the read: news during it wakes the listener again.
    listener.needsRead = false
    const version = this.registry.version(userId)
    let head: StreamRead
    try {
      head = await this.parts.stream.read(userId, since, limit)
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
    this.answers.fromStream++
    const events = head.events.map(wireEventOfRow)
    const next = events.length > 0 ? events[events.length - 1]!.seq : since
    // Only a read that reached the head says the stream ends at `next` (a full page may not).
    if (next === head.lastSeq) this.remember(userId, next, version)
    return {events, more: next < head.lastSeq}
  }

  /** What the listener was handed that continues at `since`, and whether the stream is known to end there. */
  private take(listener: Listener, since: bigint, limit: number): WireEvent[] | undefined {
    const run = listener.take(since, limit, this.maxBytes)
    if (!run) return undefined
    this.answers.fromMemory++
    const next = run[run.length - 1]!.seq
    // Nothing else was heard of for this user since the last handover: the stream ends at `next`.
    if (!listener.hasPending && !listener.needsRead && listener.offeredAt === this.registry.version(listener.userId)) {
      this.remember(listener.userId, next, listener.offeredAt)
    }
    return run
  }

  /**
   * Whether the listener holds events past a gap and should wait a moment
   * for the missing one; past the grace it gives up on them and reads.
   */
  private waitForGap(listener: Listener): boolean {
    if (listener.gapSince === undefined || listener.needsRead) return false
    if (Date.now() - listener.gapSince < GAP_GRACE_MS) return true
    listener.readPastGap()
    return false
  }

  /**
   * A long-poll: the events after `since` at once if there are any, else
   * waits up to `timeoutMs` for one. Subscribe first, then read, then wait: a
   * commit between the read and the wait has already reached the listener.
   */
  async poll(userId: string, query: {since: bigint; timeoutMs: number; limit: number; ack?: boolean}, signal: Cancellation, client?: string): Promise<PollAnswer> {
    const {since, timeoutMs, limit} = query
    const acks = query.ack === false ? undefined : this.parts.acks
    const deadline = Date.now() + timeoutMs
    const listener = this.registry.subscribe(userId, 'poll', client)
    this.parts.presence?.seen(userId)
    /** Where the answer ends, when the stream is known to end there as far as this server heard (see leave()). */
    let complete: bigint | undefined
    try {
      // A long-poll that follows one this server answered at the same cursor, with no
      // news for this user since, would most likely read nothing: it parks at once.
      // If news was lost on the way, the re-check of parked listeners finds it, so
      // this costs at most latency. A poll that will not wait (timeout 0) always reads.
      const last = this.lastRead.get(userId)
      let mustRead = !(timeoutMs > 0 && last !== undefined && last.next === since && last.version === listener.startVersion)
      // The poll acknowledges `since` (the client moves its cursor only after processing) once `since` is known
      // to be in the stream: a read checked it, a handed-over run continues it, or the last read ended there.
      // A map lookup per poll (./acks.ts); the write is batched off this path.
      if (!mustRead) acks?.acked(userId, since)
      for (;;) {
        const run = this.take(listener, since, limit)
        if (run) {
          acks?.acked(userId, since)
          this.delivered.mark(run.length)
          complete = run[run.length - 1]!.seq
          return {events: run, next: complete}
        }
        if (!mustRead && this.waitForGap(listener)) {
          await listener.wait(GAP_GRACE_MS, signal)
          if (signal.aborted || listener.superseded) return {events: [], next: since}
          continue
        }
        if (mustRead || listener.needsRead) {
          const read = await this.read(listener, since, limit, signal, mustRead ? 'start' : listener.readReason)
          if (!read) return {events: [], next: since}
          acks?.acked(userId, since)
          if (read.events.length > 0) {
            // Only receipts or presence, and time to wait: held for the next message or the lazy delay (isLazyEvent).
            if (!read.more && this.lazyMs > 0 && deadline - Date.now() > this.lazyMs && read.events.every((event) => isLazyEvent(event.type))) {
              listener.hold(read.events, this.registry.version(userId), this.lazyMs)
            } else {
              this.delivered.mark(read.events.length)
              const next = read.events[read.events.length - 1]!.seq
              if (!read.more) complete = next
              return {events: read.events, next}
            }
          }
        }
        mustRead = false
        // Beyond what it holds: the re-check must not take held lazy events for news it missed.
        listener.since = listener.heldThrough(since)
        const remaining = deadline - Date.now()
        if (remaining <= 0) {
          listener.releaseLazy()
          const held = this.take(listener, since, limit)
          if (held) {
            this.delivered.mark(held.length)
            complete = held[held.length - 1]!.seq
            return {events: held, next: complete}
          }
        }
        if (remaining <= 0 || signal.aborted || listener.superseded) return {events: [], next: since}
        await listener.wait(remaining, signal)
      }
    } finally {
      this.leave(listener, complete)
    }
  }

  /**
   * A poll ends. When it answered through `complete` (the end of the stream
   * as far as this server heard: a run handed over, or a read that reached
   * the head) and was the user's only listener, what it held beyond goes to
   * the mailbox, and the user's next poll from `complete` skips its read:
   * every commit for the user this server heard of since this poll
   * subscribed went to it, so it is in the answer, in the mailbox, or to
   * come. Before, those events were dropped, and the next poll read them
   * back; under load each read let more arrive during it, so one read led to
   * the next.
   */
  private leave(listener: Listener, complete: bigint | undefined): void {
    if (complete === undefined) return listener.close()
    const version = this.registry.leave(listener, complete)
    if (version !== undefined) this.remember(listener.userId, complete, version)
  }

  /**
   * A stream: its first read decides whether it opens (a cursor the stream
   * cannot serve throws, before anything is written), then every event after
   * `since` is written as it commits, with a heartbeat after `heartbeatMs` of
   * silence. It ends when the client goes away (`signal`), when a newer
   * listener of the same client replaces it, when the server drains, or when
   * the client reads too slowly; the client resumes from its last id.
   */
  async stream(userId: string, query: {since: bigint; limit: number}, sink: StreamSink, signal: Cancellation, client?: string): Promise<void> {
    const {limit} = query
    let since = query.since
    const listener = this.registry.subscribe(userId, 'stream', client)
    this.parts.presence?.seen(userId)
    let opened = false
    try {
      const first = await this.read(listener, since, limit, signal, 'start')
      if (!first) return
      sink.open(since)
      opened = true
      // A stream has no acknowledgement: what it wrote counts as delivered (docs/api.md, "Receipts").
      this.parts.acks?.acked(userId, since)
      const write = (events: WireEvent[]) => {
        if (events.length === 0) return
        sink.write(events)
        this.delivered.mark(events.length)
        since = events[events.length - 1]!.seq
        this.parts.acks?.acked(userId, since)
      }
      write(first.events)
      if (first.more) listener.wake('more')
      for (;;) {
        if (signal.aborted) return
        if (this.registry.closed) return sink.end({event: 'problem', problem: draining()})
        if (listener.superseded) return sink.end({event: 'superseded'})
        if (sink.backlogged) {
          // Backpressure: a slow link gets the stream at its own pace, not a growing buffer.
          if (!(await sink.drained(STREAM_DRAIN_TIMEOUT_MS))) return sink.end()
          continue
        }
        const run = this.take(listener, since, limit)
        if (run) {
          write(run)
          continue
        }
        if (this.waitForGap(listener)) {
          await listener.wait(GAP_GRACE_MS, signal)
          continue
        }
        if (listener.needsRead) {
          const read = await this.read(listener, since, limit, signal, listener.readReason)
          if (!read) continue
          write(read.events)
          if (read.more) listener.wake('more')
          continue
        }
        // Beyond what it holds (lazy events waiting for the next message): the re-check must not take them for missed news.
        listener.since = listener.heldThrough(since)
        // Its presence is refreshed as long as it lives, not only when it opened.
        this.parts.presence?.seen(userId)
        const news = await listener.wait(this.heartbeatMs, signal)
        if (!news && !signal.aborted) sink.heartbeat()
      }
    } catch (error) {
      if (!opened) throw error
      this.parts.logger.warn({err: error}, 'event stream failed; the client resumes from its cursor')
      sink.end({event: 'problem', problem: error})
    } finally {
      listener.close()
    }
  }

  // --- the server's life ---

  /**
   * Draining: peers stop pushing here (this server's presence is cleared),
   * every open poll answers now with what it has and every stream ends with
   * FC_DRAINING; any that arrives later too. Clients resume elsewhere.
   */
  async drain(): Promise<void> {
    await this.parts.presence?.stop()
    this.registry.close()
  }

  async stop(): Promise<void> {
    this.rechecker?.stop()
    await this.parts.acks?.stop()
    await this.parts.peers?.stop()
  }

  get openPolls(): number {
    return this.registry.openPolls
  }

  get openStreams(): number {
    return this.registry.openStreams
  }

  get listeningUsers(): number {
    return this.registry.listeningUsers
  }
}
