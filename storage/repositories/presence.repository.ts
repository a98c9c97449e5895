import type {DataSource} from 'typeorm'

/** A presence row older than this is ignored: polls refresh theirs well within it. */
export const PRESENCE_FRESH_SECONDS = 90

export class PresenceRepository {
  constructor(private readonly db: DataSource) {}

  /** Records that these users poll at `serverUrl` now. */
  async record(userIds: string[], serverUrl: string): Promise<void> {
    // In id order, like every writer of several rows here: two flushes (this server's, a
    // peer's for the same users) cannot lock the same rows in opposite orders and deadlock.
    userIds = [...userIds].sort((a, b) => (BigInt(a) < BigInt(b) ? -1 : 1))
    await this.db.query(
      `INSERT INTO presence (user_id, server_url, seen_at)
       SELECT id, $2, now() FROM unnest($1::bigint[]) AS id ORDER BY id
       ON CONFLICT (user_id, server_url) DO UPDATE SET seen_at = now()`,
      [userIds, serverUrl],
    )
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
}
