import type {DataSource} from 'typeorm'

/** A presence row older than this is ignored: polls refresh theirs well within it. */
export const PRESENCE_FRESH_SECONDS = 90

export class PresenceRepository {
  constructor(private readonly db: DataSource) {}

  /**
   * Records that these users poll at `serverUrl` now, and in the same
   * statement their `last_seen_at` and announced state (users.presence_online);
   * answers those who were offline and are now online (hidden users never
   * are: their last seen stays empty). The users rows are locked in id order
   * before they are read, so two servers recording the same user at once
   * see each other's write and only one of them answers that user.
   */
  async record(userIds: string[], serverUrl: string): Promise<string[]> {
    // In id order, like every writer of several rows here: two flushes (this server's, a
    // peer's for the same users) cannot lock the same rows in opposite orders and deadlock.
    userIds = [...userIds].sort((a, b) => (BigInt(a) < BigInt(b) ? -1 : 1))
    const rows = (await this.db.query(
      `WITH recorded AS (
         INSERT INTO presence (user_id, server_url, seen_at)
         SELECT id, $2, now() FROM unnest($1::bigint[]) AS id ORDER BY id
         ON CONFLICT (user_id, server_url) DO UPDATE SET seen_at = now()
         RETURNING user_id
       ), locked AS (
         SELECT id, presence_online AS was, presence_hidden AS hidden FROM users
          WHERE id IN (SELECT user_id FROM recorded) ORDER BY id FOR NO KEY UPDATE
       ), updated AS (
         UPDATE users u SET last_seen_at = CASE WHEN l.hidden THEN NULL ELSE now() END, presence_online = NOT l.hidden
           FROM locked l WHERE u.id = l.id
         RETURNING u.id, l.was, l.hidden
       )
       SELECT id::text AS id FROM updated WHERE NOT was AND NOT hidden`,
      [userIds, serverUrl],
    )) as {id: string}[]
    return rows.map((row) => row.id)
  }

  /** The other servers where any of these users polled recently, with whom to wake there. */
  async peersOf(userIds: string[], ownUrl: string): Promise<Map<string, string[]>> {
    const rows = (await this.db.query(
      `SELECT server_url AS url, array_agg(user_id::text) AS users
         FROM presence
        WHERE user_id = ANY($1::bigint[]) AND server_url <> $2
          AND seen_at > now() - make_interval(secs => $3)
        GROUP BY server_url`,
      [userIds, ownUrl, PRESENCE_FRESH_SECONDS],
    )) as {url: string; users: string[]}[]
    return new Map(rows.map((row) => [row.url, row.users]))
  }

  async forgetServer(serverUrl: string): Promise<void> {
    await this.db.query('DELETE FROM presence WHERE server_url = $1', [serverUrl])
  }

  async prune(): Promise<number> {
    const rows = (await this.db.query(
      `WITH gone AS (DELETE FROM presence WHERE seen_at < now() - make_interval(secs => $1) RETURNING 1) SELECT count(*)::int AS n FROM gone`,
      [PRESENCE_FRESH_SECONDS],
    )) as {n: number}[]
    return rows[0]?.n ?? 0
  }

  /**
   * Turns offline, and answers, at most `limit` users announced online whose
   * last poll was recorded more than `offlineMs` ago. Rows another statement
   * holds (a server recording them now, another server's sweep) are skipped:
   * the one holding them decides, so two sweeps announce a change once.
   */
  async sweepOffline(offlineMs: number, limit: number): Promise<{id: string; username: string; lastSeen: Date}[]> {
    return (await this.db.query(
      `WITH stale AS (
         SELECT id FROM users
          WHERE presence_online AND last_seen_at < now() - make_interval(secs => $1 / 1000.0)
          ORDER BY id LIMIT $2 FOR NO KEY UPDATE SKIP LOCKED
       ), gone AS (
         UPDATE users u SET presence_online = false FROM stale WHERE u.id = stale.id
         RETURNING u.id, u.username, u.last_seen_at
       )
       SELECT id::text AS id, username, last_seen_at AS "lastSeen" FROM gone`,
      [offlineMs, limit],
    )) as {id: string; username: string; lastSeen: Date}[]
  }
}
