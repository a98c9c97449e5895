import {Counter, Gauge, type Registry} from 'prom-client'

import type {FoundSession, Revocation, SessionUser} from '../../storage/repositories/session.repository.js'
import {LAST_USE_RESOLUTION_MS, REVOCATION_RETENTION_MS} from '../../storage/repositories/session.repository.js'

/*
 * Sessions answered from memory, revoked cluster-wide through PostgreSQL
 * (docs/architecture.md, "Sessions"). A logout deletes the session and
 * appends a row to `session_revocations` in one transaction; every server
 * reads that feed every REVOCATION_POLL_MS and evicts what it names. The
 * cache is believed only while the feed's last successful read was sent
 * less than CACHE_TRUST_MS ago: a server that cannot read the feed (its
 * database cut off, its loop stalled) asks the database for every request,
 * and answers 503 if that fails too, never from a cache that may hold a
 * revoked token. Peers play no part, so a server cut off from them loses
 * nothing. Hence the bound: a token revoked (its 204 answered) is refused
 * by every server within REVOCATION_BOUND_MS.
 */

/** The promise: a revoked token is refused by every chat server within this long of the logout's answer. */
export const REVOCATION_BOUND_MS = 1_000
/** How often each server reads the revocation feed: one primary-key range read, 4 a second, whatever the traffic. */
export const REVOCATION_POLL_MS = 250
/**
 * The cache is believed while the last successful feed read was sent less than this long ago. The read
 * saw every revocation committed before it was sent (ids become visible in order), so this alone would
 * keep the bound; one poll interval of margin is left for timers and the network.
 */
export const CACHE_TRUST_MS = REVOCATION_BOUND_MS - REVOCATION_POLL_MS
/** Tokens kept in memory per server (about 300 bytes each); the oldest entry goes first. */
export const SESSION_CACHE_SIZE = 100_000
/** Revocations read at most per query; a longer backlog is read page by page before the cache is believed. */
const FEED_PAGE = 1_000
/** A feed read unanswered for this long (a connection that went silent) no longer holds the next one back. */
const FEED_READ_ABANDON_MS = 5_000
/** Feed reads in flight at most: the one that hangs, and one beside it. */
const FEED_READS_AT_ONCE = 2
/** Recent revocations remembered per token and per user, to check lookups that ran while they were read. */
const REVOKED_REMEMBERED = 10_000

/** What the cache needs from storage (SessionRepository): one lookup, and the revocation feed. */
export interface SessionSource {
  find(tokenHash: Buffer): Promise<FoundSession | undefined>
  /** The feed's newest id, 0 if it is empty. */
  revocationHead(): Promise<bigint>
  /** Revocations with an id above `id`, in id order. */
  revocationsAfter(id: bigint, limit: number): Promise<Revocation[]>
}

export interface SessionCacheOptions {
  /** A session unused for this long ends (FASTCHAT_SESSION_IDLE_HOURS). */
  idleMs: number
  /** Entries kept at most. */
  size?: number
  /** Milliseconds on a monotonic clock; tests pass their own. */
  now?: () => number
}

export interface SessionCacheStats {
  /** Authentications answered from memory. */
  hits: number
  /** Session lookups sent to the database. */
  lookups: number
  entries: number
  /** Since the last successful feed read was sent; undefined before the first. */
  feedAgeMs: number | undefined
}

interface Entry {
  user: SessionUser
  /** On this.now()'s clock: the session's expiry, or when its use must be recorded again, whichever comes first. */
  validUntil: number
}

interface Lookup {
  sentAt: number
  answer: Promise<SessionUser | undefined>
}

const keyOf = (tokenHash: Buffer) => tokenHash.toString('base64')

export class SessionCache {
  private readonly entries = new Map<string, Entry>()
  private readonly byUser = new Map<string, Set<string>>()
  /** Lookups in flight, shared by the requests that arrive meanwhile with the same token. */
  private readonly lookingUp = new Map<string, Lookup>()
  /** The newest revocation id seen per token and per user. */
  private readonly revokedTokens = new Map<string, bigint>()
  private readonly revokedUsers = new Map<string, bigint>()
  /** A lookup that started before this feed id may have raced a revocation no longer remembered: it is not cached. */
  private floor = 0n
  /** The highest feed id read; undefined until the feed's head is known (nothing is cached before). */
  private last: bigint | undefined
  /** When the newest successful feed read was sent. */
  private syncedAt: number | undefined
  /** Feed reads in flight, by number, with when each was sent. */
  private readonly reads = new Map<number, number>()
  private readCount = 0
  private timer: NodeJS.Timeout | undefined
  private hits = 0
  private lookups = 0
  private readonly now: () => number
  private readonly size: number

  constructor(
    private readonly source: SessionSource,
    private readonly options: SessionCacheOptions,
  ) {
    this.now = options.now ?? (() => performance.now())
    this.size = options.size ?? SESSION_CACHE_SIZE
  }

  /** Follows the feed from its current head (an empty cache needs no history). */
  start(): void {
    if (this.timer) return
    this.timer = setInterval(() => this.tick(), REVOCATION_POLL_MS)
    this.timer.unref()
    this.tick()
  }

  stop(): void {
    clearInterval(this.timer)
    this.timer = undefined
  }

  /** Whether memory may answer: the feed was read successfully less than CACHE_TRUST_MS ago. */
  trusted(now = this.now()): boolean {
    return this.syncedAt !== undefined && now - this.syncedAt < CACHE_TRUST_MS
  }

  /** The live session of a token: from memory while it is trusted, else from the database (whose errors propagate). */
  find(tokenHash: Buffer): Promise<SessionUser | undefined> {
    const key = keyOf(tokenHash)
    const now = this.now()
    if (this.trusted(now)) {
      const entry = this.entries.get(key)
      if (entry && now < entry.validUntil) {
        this.hits++
        return Promise.resolve(entry.user)
      }
    }
    // A lookup sent a moment ago answers for this request too; an older one might predate a revocation this request must see.
    const running = this.lookingUp.get(key)
    if (running && now - running.sentAt < CACHE_TRUST_MS) return running.answer
    return this.lookUp(key, tokenHash, now)
  }

  private lookUp(key: string, tokenHash: Buffer, sentAt: number): Promise<SessionUser | undefined> {
    const mark = this.last
    this.lookups++
    const lookup: Lookup = {
      sentAt,
      answer: this.source.find(tokenHash).then(
        (found) => {
          if (this.lookingUp.get(key) === lookup) this.lookingUp.delete(key)
          if (!found) {
            this.remove(key)
            return undefined
          }
          const user = {userId: found.userId, username: found.username}
          // The database records a use at most once per LAST_USE_RESOLUTION_MS: after that, the next request looks up (and records) again.
          const validForMs = Math.min(found.expiresInMs, Math.min(LAST_USE_RESOLUTION_MS, this.options.idleMs) - found.usedAgoMs)
          if (validForMs > 0 && !this.revokedSince(mark, key, user.userId)) this.put(key, user, sentAt + validForMs)
          return user
        },
        (error: unknown) => {
          if (this.lookingUp.get(key) === lookup) this.lookingUp.delete(key)
          throw error
        },
      ),
    }
    this.lookingUp.set(key, lookup)
    return lookup.answer
  }

  /**
   * Whether a revocation of this token or user may have committed after a lookup that started at feed
   * position `mark` read the session (ids become visible in order, so any such revocation has a higher id).
   * The answer stands (the request and the logout were concurrent), but it is not kept.
   */
  private revokedSince(mark: bigint | undefined, key: string, userId: string): boolean {
    if (mark === undefined || mark < this.floor) return true
    return (this.revokedTokens.get(key) ?? 0n) > mark || (this.revokedUsers.get(userId) ?? 0n) > mark
  }

  /** Evicts what a revocation names, and remembers it for lookups in flight. Called for each feed row and for this server's own logouts. */
  revoke(revocation: Revocation): void {
    if (revocation.tokenHash) {
      const key = keyOf(revocation.tokenHash)
      this.remove(key)
      this.remember(this.revokedTokens, key, revocation.id)
    }
    if (revocation.userId !== undefined) {
      for (const key of this.byUser.get(revocation.userId) ?? []) this.remove(key)
      this.remember(this.revokedUsers, revocation.userId, revocation.id)
    }
  }

  private remember(map: Map<string, bigint>, key: string, id: bigint): void {
    const newest = (map.get(key) ?? 0n) > id ? map.get(key)! : id
    map.delete(key)
    map.set(key, newest)
    if (map.size <= REVOKED_REMEMBERED) return
    const [oldest, oldestId] = map.entries().next().value!
    map.delete(oldest)
    if (oldestId > this.floor) this.floor = oldestId
  }

  private put(key: string, user: SessionUser, validUntil: number): void {
    this.remove(key)
    if (this.entries.size >= this.size) this.remove(this.entries.keys().next().value!)
    this.entries.set(key, {user, validUntil})
    let keys = this.byUser.get(user.userId)
    if (!keys) this.byUser.set(user.userId, (keys = new Set()))
    keys.add(key)
  }

  private remove(key: string): void {
    const entry = this.entries.get(key)
    if (!entry) return
    this.entries.delete(key)
    const keys = this.byUser.get(entry.user.userId)
    keys?.delete(key)
    if (keys?.size === 0) this.byUser.delete(entry.user.userId)
  }

  /** One read at a time, unless the one in flight has hung. */
  private tick(): void {
    const now = this.now()
    if (this.reads.size >= FEED_READS_AT_ONCE) return
    for (const sentAt of this.reads.values()) if (now - sentAt < FEED_READ_ABANDON_MS) return
    void this.sync()
  }

  /**
   * Reads the feed once (the head, the first time), evicting what it names; true if it was read. On
   * success the cache is trusted for CACHE_TRUST_MS from when the read was sent. Exposed for tests.
   */
  async sync(): Promise<boolean> {
    const read = ++this.readCount
    let sentAt = this.now()
    this.reads.set(read, sentAt)
    try {
      if (this.last === undefined) {
        const head = await this.source.revocationHead()
        if (this.last === undefined) {
          this.last = head
          if (head > this.floor) this.floor = head
        }
      } else {
        for (;;) {
          const rows = await this.source.revocationsAfter(this.last, FEED_PAGE)
          for (const row of rows) {
            this.revoke(row)
            if (row.id > this.last) this.last = row.id
          }
          if (rows.length < FEED_PAGE) break
          sentAt = this.now()
        }
      }
      // Feed rows are pruned after REVOCATION_RETENTION_MS: after a gap of half that, what was missed may be gone.
      if (this.syncedAt !== undefined && sentAt - this.syncedAt > REVOCATION_RETENTION_MS / 2) this.clear()
      if (this.syncedAt === undefined || sentAt > this.syncedAt) this.syncedAt = sentAt
      return true
    } catch {
      // Untrusted once CACHE_TRUST_MS has passed: requests go to the database, and fail with it.
      return false
    } finally {
      this.reads.delete(read)
    }
  }

  private clear(): void {
    this.entries.clear()
    this.byUser.clear()
    if (this.last !== undefined && this.last > this.floor) this.floor = this.last
  }

  stats(): SessionCacheStats {
    return {hits: this.hits, lookups: this.lookups, entries: this.entries.size, feedAgeMs: this.syncedAt === undefined ? undefined : this.now() - this.syncedAt}
  }
}

/** The cache seen from /metrics: how many authentications memory answered, and how old the feed's last read is. */
export function registerSessionMetrics(registry: Registry, stats: () => SessionCacheStats): void {
  new Counter({
    name: 'fastchat_server_session_cache_hits_total',
    help: 'Authentications answered from memory',
    registers: [registry],
    collect() {
      this.reset()
      this.inc(stats().hits)
    },
  })
  new Counter({
    name: 'fastchat_server_session_lookups_total',
    help: 'Session lookups sent to the database (a token new to this server, one due to record its use, or any while the revocation feed is unread)',
    registers: [registry],
    collect() {
      this.reset()
      this.inc(stats().lookups)
    },
  })
  new Gauge({
    name: 'fastchat_server_session_cache_entries',
    help: 'Sessions held in memory',
    registers: [registry],
    collect() {
      this.set(stats().entries)
    },
  })
  new Gauge({
    name: 'fastchat_server_session_revocation_feed_age_seconds',
    help: `Since the last successful read of the revocation feed was sent; above ${CACHE_TRUST_MS / 1000} s every token is looked up in the database (-1: never read)`,
    registers: [registry],
    collect() {
      const age = stats().feedAgeMs
      this.set(age === undefined ? -1 : age / 1000)
    },
  })
}
