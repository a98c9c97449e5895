import type {DataSource} from 'typeorm'

import {housekeeping} from '../data-source.js'
import {insertSession, type NewSession} from './session.repository.js'

/** A pending or approved link as the approving device sees it. */
export interface LinkRow {
  publicKey: string
  check: string
  name: string
  expiresAt: Date
  approved: boolean
  consumed: boolean
  expired: boolean
  /** Whether `secretHash` (when asked) is this link's polling secret. */
  secretMatches: boolean
}

/** What the new device's poll takes once its link is approved: a session of the approver's user, made in that transaction. */
export interface ConsumedLink {
  username: string
  ciphertext: string
  session: NewSession
  /** The user's stream head: where the new device starts reading. */
  cursor: string
}

export class DeviceLinkRepository {
  constructor(private readonly db: DataSource) {}

  /** Pending links (not expired): the global cap is checked against this. */
  async pending(): Promise<number> {
    const [row] = (await this.db.query('SELECT count(*)::int AS n FROM device_links WHERE expires_at > now()')) as {n: number}[]
    return row!.n
  }

  /** Inserts a link under `code`, unless a live one holds it (an expired one is replaced); whether it was inserted, and when it expires. */
  async create(link: {code: string; secretHash: Buffer; publicKey: string; check: string; name: string; ttlMs: number}): Promise<Date | undefined> {
    const rows = (await this.db.query(
      `INSERT INTO device_links (code, secret_hash, public_key, check_text, name, expires_at)
       VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6 / 1000.0))
       ON CONFLICT (code) DO UPDATE SET secret_hash = EXCLUDED.secret_hash, public_key = EXCLUDED.public_key, check_text = EXCLUDED.check_text,
         name = EXCLUDED.name, created_at = now(), expires_at = EXCLUDED.expires_at, approved_by = NULL, ciphertext = NULL, consumed_at = NULL
         WHERE device_links.expires_at <= now()
       RETURNING expires_at AS "expiresAt"`,
      [link.code, link.secretHash, link.publicKey, link.check, link.name, link.ttlMs],
    )) as {expiresAt: Date}[]
    return rows[0]?.expiresAt
  }

  async find(code: string, secretHash?: Buffer): Promise<LinkRow | undefined> {
    const [row] = (await this.db.query(
      `SELECT public_key AS "publicKey", check_text AS "check", name, expires_at AS "expiresAt", approved_by IS NOT NULL AS approved,
              consumed_at IS NOT NULL AS consumed, expires_at <= now() AS expired, coalesce(secret_hash = $2, false) AS "secretMatches"
         FROM device_links WHERE code = $1`,
      [code, secretHash ?? null],
    )) as LinkRow[]
    return row
  }

  /** Records the approval; false when the link is not pending (unknown, expired, already approved): find() tells which. */
  async approve(code: string, userId: string, ciphertext: string, graceMs: number): Promise<boolean> {
    // TypeORM answers an UPDATE with [rows, count].
    const [, count] = (await this.db.query(
      `UPDATE device_links SET approved_by = $2, ciphertext = $3, expires_at = greatest(expires_at, now() + make_interval(secs => $4 / 1000.0))
        WHERE code = $1 AND approved_by IS NULL AND expires_at > now()`,
      [code, userId, ciphertext, graceMs],
    )) as [unknown, number]
    return count > 0
  }

  /**
   * For the new device's poll (its secret checked by the caller): marks an
   * approved link consumed and makes the session, in one transaction, so the
   * token is handed out once. Undefined when it is not approved, or already consumed.
   */
  async consume(code: string, secretHash: Buffer, session: {tokenHash: Buffer; ttlMs: number; device: string}): Promise<ConsumedLink | undefined> {
    return this.db.transaction(async (tx) => {
      const [[link]] = (await tx.query(
        `UPDATE device_links l SET consumed_at = now() FROM users u
          WHERE l.code = $1 AND l.secret_hash = $2 AND l.approved_by = u.id AND l.consumed_at IS NULL AND l.expires_at > now()
          RETURNING u.id::text AS "userId", u.username, l.ciphertext`,
        [code, secretHash],
      )) as [{userId: string; username: string; ciphertext: string}[], number]
      if (!link) return undefined
      const made = await insertSession((sql, parameters) => tx.query(sql, parameters), {...session, userId: link.userId})
      const [head] = (await tx.query('SELECT coalesce((SELECT last_seq FROM inboxes WHERE user_id = $1), 0)::text AS seq', [link.userId])) as {seq: string}[]
      return {username: link.username, ciphertext: link.ciphertext, session: made, cursor: head!.seq}
    })
  }

  /** Drops links expired for `keepMs` (kept that long so a late poll or approval hears 410 or 409, not 404); the count. */
  async deleteExpired(keepMs: number): Promise<number> {
    return housekeeping(this.db, async (query) => {
      const [, count] = (await query('DELETE FROM device_links WHERE expires_at <= now() - make_interval(secs => $1 / 1000.0)', [keepMs])) as [unknown, number]
      return count
    })
  }
}
