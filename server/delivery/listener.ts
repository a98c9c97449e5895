import type {Cancellation} from './cancel.js'

/**
 * One event of a user's stream as it goes on the wire: its seq, its type and
 * the JSON text of the object a poll's `events[]` (or a stream's `data:`)
 * carries. The JSON is made once per event, however many listeners get it.
 */
export interface WireEvent {
  seq: bigint
  type: string
  json: string
  /** What the event costs the byte cap of an answer (ciphertext or payload plus envelope). */
  bytes: number
}

/** Events a listener keeps from commits it was handed, beyond which it reads the stream instead. */
const PENDING_MAX_EVENTS = 1_000
const PENDING_MAX_BYTES = 1024 * 1024

export type ListenerKind = 'poll' | 'stream'

/** Why a listener read the stream instead of taking what it was handed (the metric fastchat_server_listener_reads_total). */
export type ReadReason = 'start' | 'woken' | 'recheck' | 'overflow' | 'gap' | 'more'

/**
 * Events that may wait a moment (receipts, presence): a long-poll whose only
 * news is such events answers after at most the lazy delay, or at once with
 * the next other event, instead of answering each alone. In a busy
 * conversation they ride along with the messages; each would otherwise cost
 * the client a poll answer and a new poll (docs/architecture.md, "Receipts").
 */
export const isLazyEvent = (type: string) => type.startsWith('receipt.') || type === 'presence'

/**
 * A long-poll or a stream parked on this server for one user. It subscribes
 * *before* it reads the database, so a commit between its read and its wait
 * still reaches it: either as the committed events themselves (handed over
 * from memory, `offer`) or as a note that its stream has news to read
 * (`wake`). Which of the two it got decides whether the next answer needs
 * PostgreSQL (DESIGN.md, "Delivery"; docs/architecture.md, "Delivering from memory").
 */
export class Listener {
  /** Something was committed that this listener has not been handed: read the stream. */
  needsRead = false
  /** Why it must read (counted per read: Delivery.readsBy). */
  readReason: ReadReason = 'woken'
  /** Set when a newer poll or stream of the same client, or the per-user cap, replaced this one: it answers now. */
  superseded = false
  /** The cursor it waits beyond, for the re-check (see Rechecker). -1: not parked. */
  since = -1n
  /** The registry's version of the user when the last offer arrived (see Delivery's skip-read rule). */
  offeredAt = -1
  /** The registry's version of the user when this listener subscribed, before a mailbox it took (the skip-read rule compares it). */
  startVersion = -1
  private pending: WireEvent[] = []
  private pendingBytes = 0
  /** Events were handed over since the last take(). */
  private fresh = false
  /** Since when what it holds starts past a gap (ms), if it does. */
  gapSince: number | undefined
  private release: (() => void) | undefined
  /** While lazy events are held: when they are answered anyway (ms), and the timer that does it. */
  private lazyUntil: number | undefined
  private lazyTimer: NodeJS.Timeout | undefined

  constructor(
    readonly userId: string,
    readonly kind: ListenerKind,
    /** Which client opened it (its token, plus a client id if it sent one). */
    readonly client: string | undefined,
    private readonly onDone: (listener: Listener) => void,
  ) {}

  /** There is news this listener was not handed. */
  wake(reason: ReadReason = 'woken'): void {
    this.needsRead = true
    this.readReason = reason
    this.release?.()
  }

  supersede(): void {
    this.superseded = true
    this.release?.()
  }

  /** Committed events of this listener's user, in any order; too many and it reads instead. */
  offer(events: WireEvent[], version: number): void {
    this.offeredAt = version
    if (!this.keep(events)) {
      this.needsRead = true
      this.readReason = 'overflow'
    }
    this.fresh = true
    this.release?.()
  }

  /** Adds events to what it holds; false (holding nothing then) when that would pass the caps: it must read instead. */
  private keep(events: WireEvent[]): boolean {
    for (const event of events) {
      if (this.pending.length >= PENDING_MAX_EVENTS || this.pendingBytes + event.bytes > PENDING_MAX_BYTES) {
        this.dropPending()
        return false
      }
      this.pending.push(event)
      this.pendingBytes += event.bytes
    }
    return true
  }

  /**
   * Lazy events (isLazyEvent): kept like offered ones, but a listener holding
   * only these is released after `delayMs`, not now: a poll answers, a stream
   * writes them with the next message or then. (A stream writing each at once
   * cost a write, and its client a read, per receipt: in the closed-loop bench
   * that was most of the receipts' cost on streams.)
   */
  hold(events: WireEvent[], version: number, delayMs: number): void {
    if (delayMs <= 0) return this.offer(events, version)
    this.offeredAt = version
    if (!this.keep(events)) return this.wake('overflow')
    this.armLazy(delayMs)
  }

  private armLazy(delayMs: number): void {
    if (this.lazyTimer !== undefined) return
    this.lazyUntil = Date.now() + delayMs
    this.lazyTimer = setTimeout(() => {
      this.lazyTimer = undefined
      this.lazyUntil = undefined
      this.fresh = true
      this.release?.()
    }, delayMs)
  }

  /** Lazy events held are due now (a poll at its deadline answers with them rather than empty). */
  releaseLazy(): void {
    if (this.lazyUntil !== undefined) this.disarmLazy()
  }

  private disarmLazy(): void {
    clearTimeout(this.lazyTimer)
    this.lazyTimer = undefined
    this.lazyUntil = undefined
  }

  /**
   * Where the events held continue the stream to without a gap, from
   * `since`: what a poll holding lazy events waits beyond (the re-check must
   * not take those for news it missed).
   */
  heldThrough(since: bigint): bigint {
    if (this.pending.length === 0) return since
    this.pending.sort((a, b) => (a.seq < b.seq ? -1 : a.seq > b.seq ? 1 : 0))
    let through = since
    for (const event of this.pending) {
      if (event.seq <= through) continue
      if (event.seq !== through + 1n) break
      through = event.seq
    }
    return through
  }

  /**
   * The events handed over that continue the stream right after `since`, in
   * seq order, at most `limit` and `maxBytes` of them (at least one).
   * Undefined when there are none; a gap (an event handed over whose
   * predecessor was not) means the stream must be read.
   */
  take(since: bigint, limit: number, maxBytes: number): WireEvent[] | undefined {
    this.fresh = false
    if (this.pending.length === 0) return undefined
    this.pending.sort((a, b) => (a.seq < b.seq ? -1 : a.seq > b.seq ? 1 : 0))
    let start = 0
    while (start < this.pending.length && this.pending[start]!.seq <= since) start++
    let end = start
    let bytes = 0
    let expected = since + 1n
    while (end < this.pending.length && end - start < limit) {
      const event = this.pending[end]!
      if (event.seq !== expected) break
      if (end > start && bytes + event.bytes > maxBytes) break
      bytes += event.bytes
      expected++
      end++
    }
    const run = this.pending.slice(start, end)
    const lazyWaiting = this.lazyUntil !== undefined && Date.now() < this.lazyUntil
    // Held past a gap, lazy events within their delay wait for the missing event without the gap's grace:
    // they would wait that long anyway, and the missing one is most often a peer's push still on its way (the
    // delay's end, or the re-check, reads if it never comes). A message past a gap starts the grace: that is a gap.
    const gapMatters = (from: number) => !lazyWaiting || this.pending.slice(from).some((event) => !isLazyEvent(event.type))
    // Only lazy events, within their delay: not yet; the timer, or the next other event, releases them.
    if (run.length > 0 && lazyWaiting && run.every((event) => isLazyEvent(event.type))) {
      if (end < this.pending.length && gapMatters(end)) this.gapSince ??= Date.now()
      if (start > 0) {
        this.pending = this.pending.slice(start)
        this.pendingBytes = this.pending.reduce((sum, event) => sum + event.bytes, 0)
      }
      return undefined
    }
    if (run.length === 0 && start < this.pending.length) {
      // What was handed over starts past a gap: the missing event is most likely still on its
      // way (two commits resolve in either order); the caller waits a moment, then reads.
      if (gapMatters(start)) this.gapSince ??= Date.now()
      if (start > 0) this.pending = this.pending.slice(start)
      return undefined
    }
    this.gapSince = undefined
    this.pending = this.pending.slice(end)
    if (this.pending.length === 0) this.disarmLazy()
    this.pendingBytes -= bytes
    if (start > 0) this.pendingBytes = this.pending.reduce((sum, event) => sum + event.bytes, 0)
    return run.length > 0 ? run : undefined
  }

  /**
   * What it holds past `after` (events handed over but not answered with),
   * and how long lazy ones among them may still wait: what a poll that
   * answers leaves for the user's next one (ListenerRegistry.leave).
   */
  leftover(after: bigint): {events: WireEvent[]; lazyMs: number} {
    const events = this.pending.filter((event) => event.seq > after)
    return {events, lazyMs: this.lazyUntil === undefined ? 0 : Math.max(1, this.lazyUntil - Date.now())}
  }

  /** Whether events are waiting to be taken. */
  get hasPending(): boolean {
    return this.pending.length > 0
  }

  private dropPending(): void {
    this.disarmLazy()
    this.pending = []
    this.pendingBytes = 0
    this.gapSince = undefined
  }

  /** Gives up on what it holds past a gap: the stream is read instead. */
  readPastGap(): void {
    this.dropPending()
    this.needsRead = true
    this.readReason = 'gap'
  }

  /**
   * Resolves at once if there is news (or the listener was replaced), else on
   * the first news, after `timeoutMs`, or on abort; true when there is news.
   */
  wait(timeoutMs: number, signal?: Cancellation): Promise<boolean> {
    if (this.needsRead || this.fresh || this.superseded || signal?.aborted) return Promise.resolve(!signal?.aborted)
    return new Promise((resolve) => {
      const finish = (news: boolean) => {
        clearTimeout(timer)
        signal?.removeEventListener('abort', onAbort)
        this.release = undefined
        resolve(news)
      }
      const onAbort = () => finish(false)
      const timer = setTimeout(() => finish(false), timeoutMs)
      signal?.addEventListener('abort', onAbort, {once: true})
      this.release = () => finish(true)
    })
  }

  /** Whether it is parked in wait() right now. */
  get waiting(): boolean {
    return this.release !== undefined
  }

  /** Ends it: a parked wait returns, and the registry forgets it. */
  close(): void {
    this.disarmLazy()
    this.release?.()
    this.onDone(this)
  }
}
