import type {DataSource} from 'typeorm'

import {prepared} from './prepared.js'

export interface SessionUser {
  userId: string
  username: string
}

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

  /** The user behind a live token; expired and deleted sessions find nothing. */
  async find(tokenHash: Buffer): Promise<SessionUser | undefined> {
    const [row] = await prepared<SessionUser>(
      this.db,
      'session-find',
      `SELECT u.id::text AS "userId", u.username FROM sessions s JOIN users u ON u.id = s.user_id
        WHERE s.token_hash = $1 AND s.expires_at > now()`,
      [tokenHash],
    )
    return row
  }

  async delete(tokenHash: Buffer): Promise<void> {
    await this.db.query('DELETE FROM sessions WHERE token_hash = $1', [tokenHash])
  }

  async deleteExpired(): Promise<number> {
    const [, count] = (await this.db.query('DELETE FROM sessions WHERE expires_at <= now()')) as [unknown, number]
    return count
  }
}
