import {isLazyEvent, Listener, type ListenerKind, type ReadReason, type WireEvent} from './listener.js'

/** Users whose wake-up count is kept; past this all are forgotten (which only costs each a read). */
const MAX_TRACKED_VERSIONS = 200_000
/** Users with events kept for their next poll (mailboxes); past this all are dropped (which costs each a read). */
const MAX_MAILBOXES = 100_000
/** Events kept for one user between two polls; past this they are dropped and the next poll reads. */
const MAILBOX_MAX_EVENTS = 200
/** Bytes of events kept for one user between two polls (the cap of one poll answer's worth). */
const MAILBOX_MAX_BYTES = 256 * 1024
/** Bytes kept in all mailboxes of a server; past this all are dropped (every such user's next poll reads). */
const MAILBOXES_MAX_BYTES = 32 * 1024 * 1024
/**
 * How long a mailbox is kept for the next poll. A client following the
 * stream polls again within milliseconds of an answer; one that comes later
 * reads, as before mailboxes.
 */
export const MAILBOX_KEEP_MS = 10_000

/** Events committed for a user while no listener of theirs was here, for the next one. */
interface Mailbox {
  events: WireEvent[]
  bytes: number
  /** The user's version when the first event was kept: any change since (a wake, a read elsewhere) voids the box. */
  version: number
  /** When it is dropped (the next poll reads instead). */
  expires: number
  /** Until when its lazy events may wait (Listener.hold's delay), from the first one kept. */
  lazyUntil: number | undefined
}

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

  /**
   * @param maxPerUser at most this many open polls and streams per user; the oldest gives way.
   * @param mailboxMs how long events are kept for a user between two polls (MAILBOX_KEEP_MS); 0: not at all.
   */
  constructor(
    private readonly maxPerUser = Number.POSITIVE_INFINITY,
    private readonly mailboxMs = MAILBOX_KEEP_MS,
  ) {}

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
    // Events committed while this user had no listener here: this one starts with them. Taken, the box is
    // gone and the version moves on, so another client of the same user reads rather than miss them; the
    // skip-read rule compares the version from before that (a void box has already moved it: then it reads).
    const box = this.takeMailbox(userId)
    listener.startVersion = this.version(userId)
    if (box) {
      const version = this.bump(userId)
      if (box.events.every((event) => isLazyEvent(event.type))) listener.hold(box.events, version, (box.lazyUntil ?? 0) - Date.now())
      else listener.offer(box.events, version)
    }
    return listener
  }

  /**
   * A poll that answered, and was the user's only listener here, leaving
   * what it held past its answer (events that came during its read, past a
   * gap or its caps, lazy ones in their delay) for the user's next poll, as
   * if they had come just after it: kept in the mailbox, not dropped (which
   * made the next poll read them back). Returns the user's version from
   * before they were kept: a next poll that finds the version still there
   * skips its read (Delivery's skip-read rule). Undefined when the listener
   * was not alone (another client of the user may still need them).
   */
  leave(listener: Listener, after: bigint): number | undefined {
    const set = this.listeners.get(listener.userId)
    const alone = !this.closed && set?.size === 1 && set.has(listener) && !listener.superseded && !listener.needsRead
    const leftover = alone ? listener.leftover(after) : undefined
    listener.close()
    if (!leftover) return undefined
    const version = this.version(listener.userId)
    // The box decides when it is taken whether its events may still wait (all lazy) or are offered at once.
    if (leftover.events.length > 0) this.keepForLater(listener.userId, leftover.events, leftover.lazyMs)
    return version
  }

  /** The user's mailbox if it is still good (not expired, nothing happened to the user since it began); dropped either way. */
  private takeMailbox(userId: string): Mailbox | undefined {
    const box = this.mailboxes.get(userId)
    if (!box) return undefined
    this.dropMailbox(userId, box)
    if (box.expires <= Date.now() || box.version !== this.version(userId)) {
      // Its events were never handed to anyone: the next poll must read them (the skip-read rule must not hold).
      this.bump(userId)
      return undefined
    }
    return box
  }

  private dropMailbox(userId: string, box: Mailbox): void {
    this.mailboxes.delete(userId)
    this.mailboxBytes -= box.bytes
  }

  /**
   * Keeps `events` for the user's next listener (no version bump: the next
   * poll takes them from memory instead of reading), if the user's last
   * listener here went less than `mailboxMs` ago. Otherwise, or past a
   * cap (the user's box dropped then), the version is bumped: the next poll
   * reads.
   */
  private keepForLater(userId: string, events: WireEvent[], lazyDelayMs: number): void {
    if (this.mailboxMs <= 0) {
      this.bump(userId)
      return
    }
    const now = Date.now()
    if (now - this.lastSweep > this.mailboxMs) this.sweepMailboxes(now)
    let box = this.mailboxes.get(userId)
    if (!box && (this.lastGone.get(userId) ?? Number.NEGATIVE_INFINITY) + this.mailboxMs <= now) {
      // Not polling here lately: nobody would take it.
      this.bump(userId)
      return
    }
    if (box && (box.expires <= now || box.version !== this.version(userId))) {
      this.dropMailbox(userId, box)
      this.bump(userId)
      box = undefined
    }
    const bytes = events.reduce((sum, event) => sum + event.bytes, 0)
    if (!box) {
      if (this.mailboxes.size >= MAX_MAILBOXES || this.mailboxBytes + bytes > MAILBOXES_MAX_BYTES) {
        // Dropped, all: every user's next poll reads (a new floor for every version).
        this.mailboxes.clear()
        this.mailboxBytes = 0
        this.forgetVersions()
      }
      box = {events: [], bytes: 0, version: this.version(userId), expires: now + this.mailboxMs, lazyUntil: undefined}
      this.mailboxes.set(userId, box)
    }
    if (box.events.length + events.length > MAILBOX_MAX_EVENTS || box.bytes + bytes > MAILBOX_MAX_BYTES || this.mailboxBytes + bytes > MAILBOXES_MAX_BYTES) {
      this.dropMailbox(userId, box)
      this.bump(userId)
      return
    }
    if (lazyDelayMs > 0) box.lazyUntil ??= now + lazyDelayMs
    box.events.push(...events)
    box.bytes += bytes
    this.mailboxBytes += bytes
  }

  /** Drops the mailboxes nobody came for in time (their users' next polls read), and forgets who left long ago. */
  private sweepMailboxes(now: number): void {
    this.lastSweep = now
    for (const [userId, at] of this.lastGone) if (at + this.mailboxMs <= now) this.lastGone.delete(userId)
    for (const [userId, box] of this.mailboxes) {
      if (box.expires > now) continue
      this.dropMailbox(userId, box)
      this.bump(userId)
    }
  }

  /**
   * Events that came for a user between two of their polls (Mailbox): kept
   * for the next one, which then need not read them back (the version is not
   * bumped for them, so the skip-read rule still holds). Dropping them (caps,
   * expiry) bumps the version: the next poll reads instead.
   */
  private readonly mailboxes = new Map<string, Mailbox>()
  private mailboxBytes = 0
  private lastSweep = 0
  /**
   * When each user's last listener here went (the start of a gap between two
   * polls). Only those users get mailboxes: a recipient who listens on
   * another server, or nowhere, would never come for theirs.
   */
  private readonly lastGone = new Map<string, number>()

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

  /**
   * Committed events, by user, handed to the listeners as they are (no read
   * needed); for a user with none here now (between two polls), kept for the
   * next one (mailboxes).
   */
  offer(byUser: Map<string, WireEvent[]>): void {
    if (this.versions.size > MAX_TRACKED_VERSIONS) this.forgetVersions()
    for (const [id, events] of byUser) {
      const set = this.listeners.get(id)
      if (!set || set.size === 0) {
        if (this.closed) this.bump(id)
        else this.keepForLater(id, events, 0)
        continue
      }
      const version = this.bump(id)
      for (const listener of set) listener.offer(events, version)
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
      if (this.closed) this.bump(id)
      else this.keepForLater(id, events, delayMs)
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
    this.mailboxBytes = 0
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
    if (set.size === 0) {
      this.listeners.delete(listener.userId)
      // Between two polls from here on: what comes for this user meanwhile is kept for the next (mailboxes).
      if (this.mailboxMs > 0) {
        if (this.lastGone.size >= MAX_MAILBOXES) this.lastGone.clear()
        this.lastGone.set(listener.userId, Date.now())
      }
    }
  }
}
