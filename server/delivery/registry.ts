import {Listener, type ListenerKind, type ReadReason, type WireEvent} from './listener.js'

/** Users whose wake-up count is kept; past this all are forgotten (which only costs each a read). */
const MAX_TRACKED_VERSIONS = 200_000
/** Users with lazy events kept for their next poll (see hold()); past this all are dropped (which costs each a read). */
const MAX_MAILBOXES = 100_000
/** Lazy events kept for one user between two polls; past this they are dropped and the next poll reads. */
const MAILBOX_MAX_EVENTS = 200

/**
 * The polls and streams open on this server, by user. It knows nothing of
 * HTTP or the database: it parks listeners, hands them what was committed,
 * and keeps, per user, a version that changes with every commit it hears of
 * (the skip-read rule in Delivery rests on it).
 */
export class ListenerRegistry {
  private readonly listeners = new Map<string, Set<Listener>>()
  private polls = 0
  private streams = 0
  /** Draining: every listener answers now, and any that arrives later at once. */
  closed = false

  /** @param maxPerUser at most this many open polls and streams per user; the oldest gives way. */
  constructor(private readonly maxPerUser = Number.POSITIVE_INFINITY) {}

  /**
   * A new poll or stream. One from a client that already has one open here
   * replaces it (its connection is most likely dead: a client listens once at
   * a time), and a user never holds more than `maxPerUser`: the oldest is
   * answered first. Either way the replaced one answers at once.
   */
  subscribe(userId: string, kind: ListenerKind, client?: string): Listener {
    const listener = new Listener(userId, kind, client, (done) => this.remove(done))
    let set = this.listeners.get(userId)
    if (!set) this.listeners.set(userId, (set = new Set()))
    if (client !== undefined) for (const other of set) if (other.client === client && !other.superseded) other.supersede()
    let open = 0
    for (const other of set) if (!other.superseded) open++
    for (const other of set) {
      if (open < this.maxPerUser) break
      if (!other.superseded) {
        other.supersede()
        open--
      }
    }
    set.add(listener)
    if (kind === 'poll') this.polls++
    else this.streams++
    if (this.closed) listener.supersede()
    // Lazy events that arrived while this user had no listener here: this one starts with them.
    const box = this.mailboxes.get(userId)
    if (box) {
      this.mailboxes.delete(userId)
      listener.hold(box.events, this.version(userId), box.until - Date.now())
    }
    return listener
  }

  /**
   * Lazy events (receipts, presence) that came for a user between two of
   * their polls: kept for the next one, which then need not read them back
   * (the version is not bumped for them, so the skip-read rule still holds).
   * Dropping them (caps) bumps the version: the next poll reads instead.
   */
  private readonly mailboxes = new Map<string, {events: WireEvent[]; until: number}>()

  /**
   * How many commits each user has had here: a poll that read a user's stream
   * at version v knows nothing can have been committed for that user since,
   * as far as this server has heard, while the version is still v.
   */
  private readonly versions = new Map<string, number>()
  /** Every version handed out comes from this clock, so none repeats... */
  private clock = 0
  /** ...and a user forgotten by a clear() gets one newer than any before it. */
  private floor = 0

  version(userId: string): number {
    return this.versions.get(userId) ?? this.floor
  }

  private bump(userId: string): number {
    const version = ++this.clock
    this.versions.set(userId, version)
    return version
  }

  private forgetVersions(): void {
    this.versions.clear()
    this.floor = ++this.clock
  }

  /** News for these users that they must read from the stream; unknown users cost a map lookup. */
  wake(userIds: Iterable<string>, reason: ReadReason = 'woken'): void {
    if (this.versions.size > MAX_TRACKED_VERSIONS) this.forgetVersions()
    for (const id of userIds) {
      this.bump(id)
      const set = this.listeners.get(id)
      if (set) for (const listener of set) listener.wake(reason)
    }
  }

  /** Committed events, by user, handed to the listeners as they are (no read needed). */
  offer(byUser: Map<string, WireEvent[]>): void {
    if (this.versions.size > MAX_TRACKED_VERSIONS) this.forgetVersions()
    for (const [id, events] of byUser) {
      const version = this.bump(id)
      const set = this.listeners.get(id)
      if (set) for (const listener of set) listener.offer(events, version)
    }
  }

  /**
   * Committed lazy events (receipts, presence), by user: held by polls for up
   * to `delayMs` (Listener.hold); for a user with no listener here now, kept
   * for the next one (mailboxes).
   */
  hold(byUser: Map<string, WireEvent[]>, delayMs: number): void {
    if (this.versions.size > MAX_TRACKED_VERSIONS) this.forgetVersions()
    for (const [id, events] of byUser) {
      const set = this.listeners.get(id)
      if (set && set.size > 0) {
        const version = this.bump(id)
        for (const listener of set) listener.hold(events, version, delayMs)
        continue
      }
      if (delayMs <= 0) {
        this.bump(id)
        continue
      }
      let box = this.mailboxes.get(id)
      if (!box) {
        if (this.mailboxes.size >= MAX_MAILBOXES) {
          // Dropped, all: every user's next poll reads (a new floor for every version).
          this.mailboxes.clear()
          this.forgetVersions()
        }
        this.mailboxes.set(id, (box = {events: [], until: Date.now() + delayMs}))
      }
      if (box.events.length + events.length > MAILBOX_MAX_EVENTS) {
        this.mailboxes.delete(id)
        this.bump(id)
        continue
      }
      box.events.push(...events)
    }
  }

  /** For each user with a parked listener, the lowest cursor one of them waits beyond. */
  parked(): Map<string, bigint> {
    const out = new Map<string, bigint>()
    for (const [userId, set] of this.listeners) {
      for (const listener of set) {
        if (!listener.waiting || listener.since < 0n) continue
        const known = out.get(userId)
        if (known === undefined || listener.since < known) out.set(userId, listener.since)
      }
    }
    return out
  }

  /** Answers every open listener now and any that arrives later at once (draining). */
  close(): void {
    this.closed = true
    this.mailboxes.clear()
    this.forgetVersions()
    for (const set of this.listeners.values()) for (const listener of set) listener.supersede()
  }

  get openPolls(): number {
    return this.polls
  }

  get openStreams(): number {
    return this.streams
  }

  /** Users with at least one open poll or stream here. */
  get listeningUsers(): number {
    return this.listeners.size
  }

  private remove(listener: Listener): void {
    const set = this.listeners.get(listener.userId)
    if (!set?.delete(listener)) return
    if (listener.kind === 'poll') this.polls--
    else this.streams--
    if (set.size === 0) this.listeners.delete(listener.userId)
  }
}
