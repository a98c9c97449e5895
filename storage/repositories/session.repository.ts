import {randomUUID} from 'node:crypto'

import type {DataSource} from 'typeorm'

import {housekeeping} from '../data-source.js'
import {prepared} from './prepared.js'

export interface SessionUser {
  userId: string
  username: string
}

/** A live session as found, with its times relative to the database's clock (so a server's own clock may differ). */
export interface FoundSession extends SessionUser {
  /** Until `expires_at`. */
  expiresInMs: number
  /** Since the recorded use (`last_used_at`): 0 when this lookup recorded it. */
  usedAgoMs: number
}

/** A row of the revocation feed: one token (a logout), or every session of a user (log out everywhere). */
export interface Revocation {
  id: bigint
  tokenHash?: Buffer
  userId?: string
}

interface PendingFind {
  tokenHash: Buffer
  resolve: (user: FoundSession | undefined) => void
  reject: (error: unknown) => void
}

/** Most tokens one batched lookup covers. */
const FIND_BATCH_MAX = 500

/**
 * A session's use is recorded at most this often: a write per request would
 * double the database work of every poll for a figure needed to the day.
 * (So a session ends between idle − 1 h and idle after its last use.)
 */
export const LAST_USE_RESOLUTION_MS = 3_600_000

// $2: the idle limit in ms. `stale`: the recorded use is older than the resolution.
const LIVE = `s.expires_at > now() AND s.last_used_at > now() - make_interval(secs => $2 / 1000.0)`
const STALE = `s.last_used_at < now() - interval '${LAST_USE_RESOLUTION_MS / 1000} seconds' AS stale`

const TIMES = `(extract(epoch FROM s.expires_at - now()) * 1000)::float8 AS "expiresInMs",
  (extract(epoch FROM now() - s.last_used_at) * 1000)::float8 AS "usedAgoMs"`

const FIND_ONE = `SELECT u.id::text AS "userId", u.username, ${STALE}, ${TIMES} FROM sessions s JOIN users u ON u.id = s.user_id
  WHERE s.token_hash = $1 AND ${LIVE}`

const FIND_MANY = `SELECT s.token_hash AS hash, u.id::text AS "userId", u.username, ${STALE}, ${TIMES} FROM sessions s JOIN users u ON u.id = s.user_id
  WHERE s.token_hash = ANY($1::bytea[]) AND ${LIVE}`

const TOUCH = `UPDATE sessions SET last_used_at = now()
  WHERE token_hash = ANY($1::bytea[]) AND last_used_at < now() - interval '${LAST_USE_RESOLUTION_MS / 1000} seconds'`

type FoundRow = FoundSession & {stale: boolean}

/**
 * Revocation rows are kept this long, then pruned with expired sessions. A
 * server whose feed reads stopped for half of it cannot know what it missed,
 * and empties its cache (server/services/session-cache.ts).
 */
export const REVOCATION_RETENTION_MS = 600_000

/**
 * Taken by every writer of the feed until it commits: revocation ids then
 * become visible in id order, so a reader of `id > $last` never skips one
 * that commits late (the classic BIGSERIAL gap; logouts are rare, and the
 * lock does not block readers).
 */
const LOCK_FEED = 'LOCK TABLE session_revocations IN SHARE ROW EXCLUSIVE MODE'

export const DEFAULT_DEVICE_NAME = 'unnamed'

export interface NewSession {
  id: string
  device: string
  expiresAt: Date
}

/** One of a user's sessions, as GET /v1/devices shows it. `lastActiveAt` is `last_used_at`: recorded at most once per LAST_USE_RESOLUTION_MS. */
export interface DeviceRow {
  id: string
  name: string
  createdAt: Date
  lastActiveAt: Date
  current: boolean
}

type Query = (sql: string, parameters?: unknown[]) => Promise<unknown>

/** Device names the user's sessions may share a base with before a name is refused: " (2)" to " (N)". */
const DEVICE_SUFFIX_MAX = 1_000

/**
 * Inserts a session inside the caller's transaction. Its name is unique among
 * the user's sessions: the user's advisory lock (logins are rare) makes two
 * concurrent logins with the same name take turns.
 */
export async function insertSession(query: Query, s: {tokenHash: Buffer; userId: string; ttlMs: number; device: string}): Promise<NewSession> {
  await query('SELECT pg_advisory_xact_lock(1718, ($1::bigint % 2147483647)::int)', [s.userId])
  const taken = new Set(((await query(
    `SELECT device_name AS name FROM sessions WHERE user_id = $1 AND (device_name = $2 OR left(device_name, length($2) + 2) = $2 || ' (')`,
    [s.userId, s.device],
  )) as {name: string}[]).map((row) => row.name))
  let device = s.device
  for (let n = 2; taken.has(device) && n <= DEVICE_SUFFIX_MAX; n++) device = `${s.device} (${n})`
  const [row] = (await query(
    `INSERT INTO sessions (token_hash, user_id, expires_at, device_name, id)
     VALUES ($1, $2, now() + make_interval(secs => $3 / 1000.0), $4, $5) RETURNING id::text AS id, expires_at AS "expiresAt"`,
    [s.tokenHash, s.userId, s.ttlMs, device, randomUUID()],
  )) as {id: string; expiresAt: Date}[]
  return {id: row!.id, device, expiresAt: row!.expiresAt}
}

export interface SessionTimes {
  /** A session not used for this long ends, whatever its expiry. */
  idleMs: number
}

export class SessionRepository {
  constructor(
    private readonly db: DataSource,
    private readonly times: SessionTimes,
  ) {}

  /** A new session (a device) named `device`, or `device (2)`, `(3)`... when one of the user's sessions has the name. */
  async create(tokenHash: Buffer, userId: string, ttlMs: number, device = DEFAULT_DEVICE_NAME): Promise<NewSession> {
    return this.db.transaction((tx) => insertSession((sql, parameters) => tx.query(sql, parameters), {tokenHash, userId, ttlMs, device}))
  }

  /** The user's live sessions, oldest first; `current` is the one of `tokenHash`. */
  async devices(userId: string, tokenHash: Buffer): Promise<DeviceRow[]> {
    return (await this.db.query(
      `SELECT s.id::text AS id, s.device_name AS name, s.created_at AS "createdAt", s.last_used_at AS "lastActiveAt", s.token_hash = $3 AS current
         FROM sessions s WHERE s.user_id = $1 AND ${LIVE} ORDER BY s.created_at, s.id`,
      [userId, this.times.idleMs, tokenHash],
    )) as DeviceRow[]
  }

  /** Ends the user's session with public id `id` as delete() does; its token hash and revocation id, undefined if the user has none with that id. */
  async deleteDevice(userId: string, id: string): Promise<{tokenHash: Buffer; revocation: bigint} | undefined> {
    return this.db.transaction(async (tx) => {
      await tx.query(LOCK_FEED)
      // TypeORM answers a DELETE with [rows, count].
      const [[gone]] = (await tx.query('DELETE FROM sessions WHERE user_id = $1 AND id = $2 RETURNING token_hash AS "tokenHash"', [userId, id])) as [{tokenHash: Buffer}[], number]
      if (!gone) return undefined
      const [row] = (await tx.query('INSERT INTO session_revocations (token_hash) VALUES ($1) RETURNING id::text AS id', [gone.tokenHash])) as {id: string}[]
      return {tokenHash: gone.tokenHash, revocation: BigInt(row!.id)}
    })
  }

  /**
   * The user behind a live token; expired and deleted sessions find nothing.
   * Lookups asked for in the same turn of the event loop share one statement
   * (a group message wakes hundreds of polls, and each comes back at once).
   */
  find(tokenHash: Buffer): Promise<FoundSession | undefined> {
    return new Promise((resolve, reject) => {
      this.pending.push({tokenHash, resolve, reject})
      if (this.pending.length === 1) setImmediate(() => void this.flush())
    })
  }

  private pending: PendingFind[] = []

  private async flush(): Promise<void> {
    const batch = this.pending
    this.pending = []
    const parts: PendingFind[][] = []
    for (let i = 0; i < batch.length; i += FIND_BATCH_MAX) parts.push(batch.slice(i, i + FIND_BATCH_MAX))
    await Promise.all(parts.map((part) => this.findPart(part)))
  }

  private async findPart(part: PendingFind[]): Promise<void> {
    try {
      let found: Map<string, FoundRow>
      if (part.length === 1) {
        const [row] = await prepared<FoundRow>(this.db, 'session-find', FIND_ONE, [part[0]!.tokenHash, this.times.idleMs])
        found = new Map(row ? [[part[0]!.tokenHash.toString('hex'), row]] : [])
      } else {
        const rows = await prepared<FoundRow & {hash: Buffer}>(this.db, 'session-find-many', FIND_MANY, [part.map((p) => p.tokenHash), this.times.idleMs])
        found = new Map(rows.map((row) => [row.hash.toString('hex'), row]))
      }
      // At most once an hour per session, so awaited: the answer then says the use is recorded.
      const stale = part.filter((request) => found.get(request.tokenHash.toString('hex'))?.stale).map((request) => request.tokenHash)
      if (stale.length > 0) await this.db.query(TOUCH, [stale])
      for (const request of part) {
        const row = found.get(request.tokenHash.toString('hex'))
        request.resolve(row ? {userId: row.userId, username: row.username, expiresInMs: row.expiresInMs, usedAgoMs: row.stale ? 0 : row.usedAgoMs} : undefined)
      }
    } catch (error) {
      for (const request of part) request.reject(error)
    }
  }

  /** Ends a session and records its revocation in the feed, in one transaction; the revocation's id. */
  async delete(tokenHash: Buffer): Promise<bigint> {
    return this.db.transaction(async (tx) => {
      await tx.query(LOCK_FEED)
      await tx.query('DELETE FROM sessions WHERE token_hash = $1', [tokenHash])
      const [row] = (await tx.query('INSERT INTO session_revocations (token_hash) VALUES ($1) RETURNING id::text AS id', [tokenHash])) as {id: string}[]
      return BigInt(row!.id)
    })
  }

  /** Ends every session of a user ("log out everywhere"), recorded in the feed as one row; the revocation's id. */
  async deleteAllOf(userId: string): Promise<bigint> {
    return this.db.transaction(async (tx) => {
      await tx.query(LOCK_FEED)
      await tx.query('DELETE FROM sessions WHERE user_id = $1', [userId])
      const [row] = (await tx.query('INSERT INTO session_revocations (user_id) VALUES ($1) RETURNING id::text AS id', [userId])) as {id: string}[]
      return BigInt(row!.id)
    })
  }

  /** The feed's newest id (0 when empty): where a server that starts with an empty cache begins to follow. */
  async revocationHead(): Promise<bigint> {
    const [row] = (await this.db.query('SELECT coalesce(max(id), 0)::text AS id FROM session_revocations')) as {id: string}[]
    return BigInt(row!.id)
  }

  /** The revocations after `id`, oldest first, at most `limit`: one primary-key range read. */
  async revocationsAfter(id: bigint, limit: number): Promise<Revocation[]> {
    const rows = await prepared<{id: string; tokenHash: Buffer | null; userId: string | null}>(
      this.db,
      'session-revocations-after',
      'SELECT id::text AS id, token_hash AS "tokenHash", user_id::text AS "userId" FROM session_revocations WHERE id > $1 ORDER BY id LIMIT $2',
      [id.toString(), limit],
    )
    return rows.map((row) => ({id: BigInt(row.id), tokenHash: row.tokenHash ?? undefined, userId: row.userId ?? undefined}))
  }

  /** Drops expired and idle sessions (the count), and revocations older than REVOCATION_RETENTION_MS. */
  async deleteExpired(): Promise<number> {
    return housekeeping(this.db, async (query) => {
      await query('DELETE FROM session_revocations WHERE at < now() - make_interval(secs => $1 / 1000.0)', [REVOCATION_RETENTION_MS])
      const [, count] = (await query(
        'DELETE FROM sessions WHERE expires_at <= now() OR last_used_at <= now() - make_interval(secs => $1 / 1000.0)',
        [this.times.idleMs],
      )) as [unknown, number]
      return count
    })
  }
}
