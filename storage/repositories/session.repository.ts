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

const FIND_ONE = `SELECT u.id::text AS "userId", u.username FROM sessions s JOIN users u ON u.id = s.user_id
  WHERE s.token_hash = $1 AND s.expires_at > now()`

const FIND_MANY = `SELECT s.token_hash AS hash, u.id::text AS "userId", u.username FROM sessions s JOIN users u ON u.id = s.user_id
  WHERE s.token_hash = ANY($1::bytea[]) AND s.expires_at > now()`

export class SessionRepository {
  constructor(private readonly db: DataSource) {}

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
      if (part.length === 1) {
        const [row] = await prepared<SessionUser>(this.db, 'session-find', FIND_ONE, [part[0]!.tokenHash])
        part[0]!.resolve(row)
        return
      }
      const rows = await prepared<SessionUser & {hash: Buffer}>(this.db, 'session-find-many', FIND_MANY, [part.map((p) => p.tokenHash)])
      const byHash = new Map(rows.map((row) => [row.hash.toString('hex'), {userId: row.userId, username: row.username}]))
      for (const request of part) request.resolve(byHash.get(request.tokenHash.toString('hex')))
    } catch (error) {
      for (const request of part) request.reject(error)
    }
  }


  async delete(tokenHash: Buffer): Promise<void> {
    await this.db.query('DELETE FROM sessions WHERE token_hash = $1', [tokenHash])
  }

  async deleteExpired(): Promise<number> {
    const [, count] = (await this.db.query('DELETE FROM sessions WHERE expires_at <= now()')) as [unknown, number]
    return count
  }
}
