import {RateMeter} from './throughput.js'

/** Users whose wake-up count is kept; past this all are forgotten (which only costs each a read). */
const MAX_TRACKED_VERSIONS = 200_000

/**
 * Wakes the long-polls open on this server. A poll subscribes *before* it
 * reads the database and then waits, so a message committed between its read
 * and its wait still wakes it (the waiter remembers the wake-up).
 */
export class Waiter {
  private woken = false
  /** Set when a newer poll of the same client, or the per-user cap, replaced this one: it answers now. */
  superseded = false
  /** The cursor this poll waits beyond, for the re-check (see Rechecker). */
  since = -1n
  private release: ((woken: boolean) => void) | undefined

  constructor(
    private readonly onDone: (waiter: Waiter) => void,
    /** Which client opened the poll (its token, plus a client id if it sent one). */
    readonly client?: string,
  ) {}

  supersede(): void {
    this.superseded = true
    this.wake()
  }

  wake(): void {
    this.woken = true
    this.release?.(true)
  }

  /** Resolves true when woken (possibly already), false after `timeoutMs` or on abort. */
  wait(timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    if (this.woken || signal?.aborted) {
      const result = this.woken
      this.woken = false
      return Promise.resolve(result)
    }
    return new Promise((resolve) => {
      const finish = (woken: boolean) => {
        clearTimeout(timer)
        signal?.removeEventListener('abort', onAbort)
        this.release = undefined
        this.woken = false
        resolve(woken)
      }
      const onAbort = () => finish(false)
      const timer = setTimeout(() => finish(false), timeoutMs)
      signal?.addEventListener('abort', onAbort, {once: true})
      this.release = finish
    })
  }

  /** Whether the poll is parked in wait() right now. */
  get waiting(): boolean {
    return this.release !== undefined
  }

  cancel(): void {
    this.release?.(false)
    this.onDone(this)
  }
}

export class DeliveryHub {
  private readonly waiters = new Map<string, Set<Waiter>>()
  private count = 0
  closed = false

  /** Told of every poll, to record where its user listens. */
  presence: {seen(userId: string): void} | undefined

  /** @param maxPerUser at most this many open polls per user; the oldest gives way. */
  constructor(private readonly maxPerUser = Number.POSITIVE_INFINITY) {}

  /**
   * A new poll. One from a client that already has a poll open here replaces
   * that one (its connection is most likely dead: a client polls one at a
   * time), and a user never holds more than `maxPerUser` polls: the oldest is
   * answered first. Either way the replaced poll answers at once, empty.
   */
  subscribe(userId: string, client?: string): Waiter {
    this.presence?.seen(userId)
    const waiter = new Waiter((done) => this.remove(userId, done), client)
    let set = this.waiters.get(userId)
    if (!set) this.waiters.set(userId, (set = new Set()))
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
    set.add(waiter)
    this.count++
    if (this.closed) waiter.wake()
    return waiter
  }

  /** Events committed through this server, and handed out by its polls, per second (for the registry). */
  readonly committed = new RateMeter()
  readonly delivered = new RateMeter()
  /** Polls woken by the re-check rather than by a push: each one is a lost or late wake-up. */
  recovered = 0

  /** Where wake-ups for polls on other servers go (peer push), if anywhere. */
  peers: {wake(userIds: Iterable<string>): void} | undefined

  /**
   * After a commit on this server: wakes these users' polls here and, through
   * peer push, on the servers where they listen. Wake-ups that came from
   * elsewhere (a peer's push, the re-check) use notify() so they are never passed on again.
   */
  announce(userIds: string[]): void {
    if (userIds.length === 0) return
    this.committed.mark(userIds.length)
    this.notify(userIds)
    this.peers?.wake(userIds)
  }

  /**
   * How many wake-ups each user has had here: a poll that read a user's stream
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

  private forgetVersions(): void {
    this.versions.clear()
    this.floor = ++this.clock
  }

  /** Wakes every poll of these users; unknown users cost a map lookup. */
  notify(userIds: Iterable<string>): void {
    if (this.versions.size > MAX_TRACKED_VERSIONS) this.forgetVersions()
    for (const id of userIds) {
      this.versions.set(id, ++this.clock)
      const set = this.waiters.get(id)
      if (set) for (const waiter of set) waiter.wake()
    }
  }

  /** For each user with a parked poll, the lowest cursor one of them waits beyond. */
  parked(): Map<string, bigint> {
    const out = new Map<string, bigint>()
    for (const [userId, set] of this.waiters) {
      for (const waiter of set) {
        if (!waiter.waiting || waiter.since < 0n) continue
        const known = out.get(userId)
        if (known === undefined || waiter.since < known) out.set(userId, waiter.since)
      }
    }
    return out
  }

  /** Wakes every open poll (to drain). */
  wakeAll(): void {
    this.forgetVersions()
    for (const set of this.waiters.values()) for (const waiter of set) waiter.wake()
  }

  /** Answers every open poll now and any that arrives later at once (draining). */
  close(): void {
    this.closed = true
    this.wakeAll()
  }

  get openPolls(): number {
    return this.count
  }

  /** Users with at least one open poll here. */
  get listeningUsers(): number {
    return this.waiters.size
  }

  private remove(userId: string, waiter: Waiter): void {
    const set = this.waiters.get(userId)
    if (!set?.delete(waiter)) return
    this.count--
    if (set.size === 0) this.waiters.delete(userId)
  }
}
