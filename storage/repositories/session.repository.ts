import type {DataSource} from 'typeorm'

import {prepared} from './prepared.js'

export interface SessionUser {
  userId: string
  username: string
}

interface PendingFind {
  tokenHash: Buffer
  resolve: (user: SessionUser | undefined) => void
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

const FIND_ONE = `SELECT u.id::text AS "userId", u.username, ${STALE} FROM sessions s JOIN users u ON u.id = s.user_id
  WHERE s.token_hash = $1 AND ${LIVE}`

const FIND_MANY = `SELECT s.token_hash AS hash, u.id::text AS "userId", u.username, ${STALE} FROM sessions s JOIN users u ON u.id = s.user_id
  WHERE s.token_hash = ANY($1::bytea[]) AND ${LIVE}`

const TOUCH = `UPDATE sessions SET last_used_at = now()
  WHERE token_hash = ANY($1::bytea[]) AND last_used_at < now() - interval '${LAST_USE_RESOLUTION_MS / 1000} seconds'`

type FoundRow = SessionUser & {stale: boolean}

export interface SessionTimes {
  /** A session not used for this long ends, whatever its expiry. */
  idleMs: number
}

export class SessionRepository {
  constructor(
    private readonly db: DataSource,
    private readonly times: SessionTimes,
  ) {}

  async create(tokenHash: Buffer, userId: string, ttlMs: number): Promise<Date> {
    const [row] = (await this.db.query(
      `INSERT INTO sessions (token_hash, user_id, expires_at)
       VALUES ($1, $2, now() + make_interval(secs => $3 / 1000.0)) RETURNING expires_at AS "expiresAt"`,
      [tokenHash, userId, ttlMs],
    )) as {expiresAt: Date}[]
    return row!.expiresAt
  }

  /**
   * The user behind a live token; expired and deleted sessions find nothing.
   * Lookups asked for in the same turn of the event loop share one statement
   * (a group message wakes hundreds of polls, and each comes back at once).
   */
  find(tokenHash: Buffer): Promise<SessionUser | undefined> {
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
        request.resolve(row ? {userId: row.userId, username: row.username} : undefined)
      }
    } catch (error) {
      for (const request of part) request.reject(error)
    }
  }

  async delete(tokenHash: Buffer): Promise<void> {
    await this.db.query('DELETE FROM sessions WHERE token_hash = $1', [tokenHash])
  }

  /** Ends every session of a user ("log out everywhere"). */
  async deleteAllOf(userId: string): Promise<number> {
    const [, count] = (await this.db.query('DELETE FROM sessions WHERE user_id = $1', [userId])) as [unknown, number]
    return count
  }

  async deleteExpired(): Promise<number> {
    const [, count] = (await this.db.query(
      'DELETE FROM sessions WHERE expires_at <= now() OR last_used_at <= now() - make_interval(secs => $1 / 1000.0)',
      [this.times.idleMs],
    )) as [unknown, number]
    return count
  }
}
