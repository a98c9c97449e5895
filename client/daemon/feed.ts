import {setTimeout as sleep} from 'node:timers/promises'

import {isFailoverError} from '../api-client.js'
import {EventTransport, type Transport, type TransportMode} from '../event-stream.js'
import {type Batch, DirectClaims, EventSync, isPeerOfferNotice} from '../event-sync.js'
import {BACKOFF_MAX_MS, BACKOFF_START_MS, type FastChatClient, LONG_POLL_MS, type Received} from '../fastchat-client.js'
import type {ReceiveFilesOptions} from '../file-receive.js'
import {GroupEventResponder} from '../group-events.js'
import {MessageOpener, type OpenedMessage} from '../receive.js'
import type {Report} from '../reports.js'
import {SEND_ATTEMPTS} from '../session.js'
import type {ReportRouter} from './reports.js'

/**
 * The daemon's reading of the event stream, for its long poll, its stream
 * and its webhook: from the profile's stored cursor (which moves once a page
 * is delivered, like `fastchat inbox`), or from a cursor the caller keeps
 * (`since`: nothing stored is read or moved).
 *
 * Two rules keep several readers in one process correct:
 * - one poll of the chat server at a time: the daemon's polls share one
 *   client id, and the server answers a poll at once, empty, when a newer one
 *   of the same client replaces it (two readers would replace each other
 *   forever);
 * - one reader of the stored cursor at a time, from its read to its commit,
 *   or two would deliver the same page.
 * A reader that wants an answer now (an `inbox`: timeout 0) does not wait
 * behind someone's 30 s poll: that poll gives way and is made again after.
 *
 * A follower (the daemon's stream, its webhook) reads the chat server's
 * event stream (SSE) in auto mode, falling back to long polls as the
 * library's messages() does. Each follower's stream has a client id of its
 * own, so it is not "a poll" in the first rule: it takes no turn upstream.
 * One that holds the stored cursor while it waits gives way to any other
 * reader of the stored cursor (which would otherwise wait for the next
 * message), and reopens after.
 */

export interface Page {
  items: Received[]
  /** The cursor after this page: `since` for the next read. */
  next: number
  /** What the library reported while reading it (keys pinned on first use, a cursor reset...). */
  reports: Report[]
}

/** Hands a page to its reader; true once it has it (written to the socket, answered 2xx): then the page is committed. */
export type Deliver = (page: Page) => Promise<boolean>

export interface Reading {
  /** Undefined: the profile's stored cursor. */
  since?: number
  /** How received files are saved; undefined: listed, not downloaded. */
  files?: ReceiveFilesOptions
  /** The reader went away, or the daemon stops. */
  signal: AbortSignal
}

// A follower polls and backs off as the library's messages() does.

const PREEMPTED = Symbol('preempted')

export class Feed {
  private readonly storedCursor = new Turns()
  private readonly upstream = new Turns()
  /** The long poll in flight, which a reader that wants an answer now interrupts. */
  private polling?: AbortController
  /** A follower's stream read that holds the stored cursor, which any other reader of it interrupts. */
  private streamingStored?: AbortController
  /** The transports of the followers, for the status. */
  private readonly followers = new Set<EventTransport>()
  /**
   * With a peer endpoint (`daemon --peer`): what it showed, and the followers
   * of the stored cursor (the stream, the webhook) that take what comes
   * directly, in the order they came. Programs that poll get the server copies.
   */
  private readonly claims = new DirectClaims()
  private readonly directFollowers: Array<(item: Received) => Promise<boolean>> = []

  constructor(
    private readonly client: FastChatClient,
    private readonly reports: ReportRouter,
    /** How followers read the chat server (default auto: the stream, else long polls). */
    private readonly mode: TransportMode = 'auto',
  ) {}

  /** What the followers read the chat server with: `poll` if any long-polls, `stream` if all stream, null when nobody follows. */
  get transport(): Transport | null {
    const used = [...this.followers].map((transport) => transport.current).filter((current) => current !== undefined)
    if (used.length === 0) return null
    return used.includes('poll') ? 'poll' : 'stream'
  }

  /**
   * One answer: the first page with something in it, waiting up to
   * `timeoutMs` for one; else an empty page once the time is up or the
   * stream has nothing more. `deliver` is called exactly once.
   */
  async once(reading: Reading, timeoutMs: number, deliver: Deliver): Promise<void> {
    if (timeoutMs === 0) this.polling?.abort()
    if (reading.since === undefined) this.streamingStored?.abort()
    const deadline = Date.now() + timeoutMs
    const remaining = () => Math.max(0, deadline - Date.now())
    const sync = reading.since === undefined ? undefined : this.sync(reading)
    for (let failures = 0; ; ) {
      let done: boolean | typeof PREEMPTED
      try {
        done = await this.turn(reading, sync, remaining, undefined, async (batch, from) => {
          if (batch.result.reset) return false
          // A page of duplicates only: past it, and read on (waiting what is left of the time) until something or nothing comes.
          const last = batch.items.length > 0 || batch.result.events === 0 || batch.next === from
          if (last && !(await deliver(page(batch)))) return true
          await this.commit(batch)
          return last
        })
      } catch (error) {
        if (reading.signal.aborted || !isFailoverError(error) || ++failures >= SEND_ATTEMPTS) throw error
        await this.client.session.failover().catch(() => undefined)
        continue
      }
      if (done === true) return
    }
  }

  /**
   * Every page from here on, until the signal or until `deliver` says the
   * reader is gone. Outages are ridden out (failing over, backing off) and
   * reported, as the library's `messages()` does.
   */
  async follow(reading: Reading, deliver: Deliver, direct?: (item: Received) => Promise<boolean>): Promise<void> {
    // Its reports (which transport) are the daemon's to log, not a reader's page.
    const transport = new EventTransport(this.reports.fallback, {mode: this.mode})
    this.followers.add(transport)
    // What comes directly goes to a follower of the stored cursor: the one whose pages it would have been in.
    if (direct && reading.since === undefined) this.directFollowers.push(direct)
    try {
      await this.following(reading, deliver, transport)
    } finally {
      transport.close()
      this.followers.delete(transport)
      const at = direct ? this.directFollowers.indexOf(direct) : -1
      if (at >= 0) this.directFollowers.splice(at, 1)
    }
  }

  /**
   * A message the peer endpoint opened (FastChatClient.openPeerEndpoint's
   * sink): claimed only when a follower of the stored cursor is there to take
   * it, and unless it was shown already; its server copy is then dropped.
   */
  async claimDirect(signedId: string, copy?: {ciphertext: string; message: OpenedMessage}): Promise<boolean> {
    if (this.directFollowers.length === 0) return false
    const {recentIds} = await this.client.session.store.state()
    return this.claims.claim(signedId, recentIds, copy)
  }

  /** Hands a claimed direct message to the first follower that takes it; if none does, its server copy is shown after all. */
  async showDirect(message: OpenedMessage): Promise<void> {
    for (const follower of [...this.directFollowers]) if (await follower(message).catch(() => false)) return
    if (message.signedId) this.claims.release(message.signedId)
  }

  private async following(reading: Reading, deliver: Deliver, transport: EventTransport): Promise<void> {
    const sync = reading.since === undefined ? undefined : this.sync(reading, transport)
    let backoff = BACKOFF_START_MS
    let lost = false
    while (!reading.signal.aborted) {
      let going: boolean | typeof PREEMPTED
      try {
        going = await this.turn(reading, sync, () => LONG_POLL_MS, transport, async (batch) => {
          if (batch.result.reset) return true
          if (!(await deliver(page(batch)))) return false
          await this.commit(batch)
          return true
        })
      } catch (error) {
        if (reading.signal.aborted) return
        if (!isFailoverError(error)) throw error
        if (!lost) this.reports.reporter({type: 'connection.lost', server: this.client.profile.server, reason: (error as Error).message})
        lost = true
        await sleep(backoff, undefined, {signal: reading.signal}).catch(() => undefined)
        backoff = Math.min(backoff * 2, BACKOFF_MAX_MS)
        if (!reading.signal.aborted) await this.client.session.failover().catch(() => undefined)
        continue
      }
      if (going === false) return
      if (lost) this.reports.reporter({type: 'connection.restored', server: this.client.profile.server})
      lost = false
      backoff = BACKOFF_START_MS
    }
  }

  /** A reader of `reading`'s cursor: for the stored one, made anew from what is saved at each turn. */
  private sync(reading: Reading, transport?: EventTransport): EventSync {
    const {session, directory} = this.client
    const opener = new MessageOpener(session, reading.files, directory)
    const from = reading.since === undefined ? undefined : {cursor: reading.since}
    // Read receipts once a program has taken a page (its commit), as the profile's setting says (docs/daemon.md).
    // One request a second at most, as `listen` does (client/receipts.ts acknowledgeSoon).
    const receipts = {handler: this.client.receipts, read: session.profile.readReceipts !== false, soonMs: 1_000}
    // Contacts' peer offers are taken in (the daemon's sends use them), and not handed to programs.
    // The direct claims only for the stored cursor: a program keeping its own cursor gets the server copies.
    const claims = from ? undefined : this.claims
    return new EventSync(session, opener, this.reports.reporter, new GroupEventResponder(directory, this.reports.reporter), from, transport, receipts, this.client.peers, claims)
  }

  /** One read and what `handle` does with it, holding the stored cursor throughout when it is the one read. */
  private async turn<T>(
    reading: Reading,
    sync: EventSync | undefined,
    waitMs: () => number,
    transport: EventTransport | undefined,
    handle: (batch: ReadBatch, from: number) => Promise<T>,
  ): Promise<T | typeof PREEMPTED> {
    const stored = reading.since === undefined
    const run = async () => {
      const current = sync ?? this.sync(reading, transport)
      const batch = await this.read(current, waitMs(), reading.signal, transport?.streaming === true, stored)
      return batch === PREEMPTED ? PREEMPTED : handle(batch, current.cursor)
    }
    return stored ? this.storedCursor.take(run) : run()
  }

  /**
   * One read of the chat server: a poll alone (a long one gives way,
   * PREEMPTED, when an impatient reader comes), or a follower's stream read
   * (which gives way to any other reader of the stored cursor it holds).
   */
  private read(sync: EventSync, waitMs: number, signal: AbortSignal, streaming: boolean, stored: boolean): Promise<ReadBatch | typeof PREEMPTED> {
    const attempt = async () => {
      const preempt = new AbortController()
      if (streaming && stored) this.streamingStored = preempt
      else if (!streaming && waitMs > 0) this.polling = preempt
      try {
        const {value, reports} = await this.reports.collect(() => sync.read(waitMs, AbortSignal.any([signal, preempt.signal])))
        return {...value, reports}
      } catch (error) {
        if (preempt.signal.aborted && !signal.aborted) return PREEMPTED
        throw error
      } finally {
        if (this.polling === preempt) this.polling = undefined
        if (this.streamingStored === preempt) this.streamingStored = undefined
      }
    }
    return streaming ? attempt() : this.upstream.take(attempt)
  }

  /** Saves the cursor; what it reports (a group keyed) is the daemon's to log: the page is answered already. */
  private async commit(batch: Batch): Promise<void> {
    const {reports} = await this.reports.collect(() => batch.commit())
    for (const report of reports) this.reports.fallback(report)
  }
}

/** A batch with what was reported while it was read. */
type ReadBatch = Batch & {reports: Report[]}

const page = (batch: ReadBatch): Page => ({items: batch.items.filter((item) => !isPeerOfferNotice(item)), next: batch.next, reports: batch.reports})

/** Takes turns in the order asked; the place in line is taken when take() is called, not when it first awaits. */
class Turns {
  private tail: Promise<void> = Promise.resolve()

  take<T>(work: () => Promise<T>): Promise<T> {
    const before = this.tail
    let release!: () => void
    this.tail = new Promise((resolve) => (release = resolve))
    return before.then(work).finally(release)
  }
}
