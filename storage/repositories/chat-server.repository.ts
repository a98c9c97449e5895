import {randomUUID} from 'node:crypto'

import type {DataSource} from 'typeorm'

export interface ChatServerRow {
  id: string
  url: string
  registeredAt: Date
  lastSeen: Date
  draining: boolean
  /** What the server said of its database in its last heartbeat. */
  databaseOk: boolean
  healthy: boolean
  stats: Record<string, unknown>
  /** Clients assigned to it since its last heartbeat (least-loaded counts them as load its stats do not show yet). */
  assignedSinceBeat: number
}

interface RawRow {
  id: string
  url: string
  registered_at: Date
  last_seen: Date
  draining: boolean
  database_ok: boolean
  healthy: boolean
  stats: Record<string, unknown>
  assigned_since_beat: number
}

const toRow = (raw: RawRow): ChatServerRow => ({
  id: raw.id,
  url: raw.url,
  registeredAt: raw.registered_at,
  lastSeen: raw.last_seen,
  draining: raw.draining,
  databaseOk: raw.database_ok,
  healthy: raw.healthy,
  stats: raw.stats,
  assignedSinceBeat: raw.assigned_since_beat,
})

/** A count from a server's heartbeat stats; 0 when missing (or, from an older server, not a number). */
const STAT = (name: string) => `coalesce(CASE WHEN jsonb_typeof(stats->'${name}') = 'number' THEN (stats->>'${name}')::numeric END, 0)`

/**
 * The chat-server registry. Every time comparison uses the database's clock
 * (`now()`), so superservers on machines with skewed clocks still agree on
 * who is healthy.
 */
export class ChatServerRepository {
  constructor(private readonly db: DataSource) {}

  /** A server that restarts at the same URL replaces its old entry. */
  async register(url: string): Promise<string> {
    const id = randomUUID()
    await this.db.transaction(async (tx) => {
      await tx.query('DELETE FROM chat_servers WHERE url = $1', [url])
      await tx.query('INSERT INTO chat_servers (id, url) VALUES ($1, $2)', [id, url])
    })
    return id
  }

  /** Returns false when the server is not (or no longer) registered. Its stats replace the last ones, and its assignments since then are forgotten (the stats count them now). */
  async heartbeat(id: string, draining: boolean, stats: Record<string, unknown>, databaseOk = true): Promise<boolean> {
    const rows: unknown[] = await this.db.query(
      `UPDATE chat_servers SET last_seen = now(), draining = $2, stats = $3, database_ok = $4, assigned_since_beat = 0 WHERE id = $1 RETURNING id`,
      [id, draining, JSON.stringify(stats), databaseOk],
    )
    // TypeORM answers an UPDATE ... RETURNING with [rows, count].
    const [returned] = rows as [unknown[], number]
    return returned.length > 0
  }

  async deregister(id: string): Promise<void> {
    await this.db.query('DELETE FROM chat_servers WHERE id = $1', [id])
  }

  /**
   * Round-robin over healthy servers. The counter is a Postgres sequence, so
   * superservers sharing the database take turns from one rotation. Servers in
   * `avoid` (one the client just failed on) are passed over while another is
   * healthy.
   */
  async assign(healthyWithinMs: number, avoid: string[] = []): Promise<string | undefined> {
    const [row] = (await this.db.query(
      `SELECT nextval('chat_server_assign_seq') AS turn,
              coalesce(array_agg(url ORDER BY registered_at, id) FILTER (WHERE url <> ALL($2::text[])), '{}') AS preferred,
              coalesce(array_agg(url ORDER BY registered_at, id), '{}') AS urls
         FROM chat_servers
        WHERE NOT draining AND database_ok AND last_seen > now() - make_interval(secs => $1 / 1000.0)`,
      [healthyWithinMs, avoid],
    )) as {turn: string; preferred: string[]; urls: string[]}[]
    if (!row) return undefined
    const urls = row.preferred.length > 0 ? row.preferred : row.urls
    if (urls.length === 0) return undefined
    return urls[Number(BigInt(row.turn) % BigInt(urls.length))]
  }

  /**
   * The healthy server with the least load: open polls + open streams from its
   * last heartbeat, plus one per client assigned to it since (so a burst of
   * clients between two heartbeats spreads instead of herding onto one
   * server); ties go round-robin, on the same sequence as assign(). The
   * healthy rows are locked for the statement, so concurrent assignments (from
   * this superserver or another on the database) see each other's increments.
   * Servers in `avoid` count only when no other is healthy.
   */
  async assignLeastLoaded(healthyWithinMs: number, avoid: string[] = []): Promise<string | undefined> {
    const rows = (await this.db.query(
      `WITH healthy AS (
         SELECT id, registered_at, url = ANY($2::text[]) AS avoided,
                ${STAT('openPolls')} + ${STAT('openStreams')} + assigned_since_beat AS load
           FROM chat_servers
          WHERE NOT draining AND database_ok AND last_seen > now() - make_interval(secs => $1 / 1000.0)
          ORDER BY id
            FOR UPDATE
       ),
       candidates AS (
         SELECT * FROM healthy WHERE NOT avoided OR NOT EXISTS (SELECT 1 FROM healthy WHERE NOT avoided)
       ),
       least AS (
         SELECT id, row_number() OVER (ORDER BY registered_at, id) - 1 AS place, count(*) OVER () AS ties
           FROM candidates
          WHERE load = (SELECT min(load) FROM candidates)
       ),
       turn AS (SELECT nextval('chat_server_assign_seq') AS turn)
       UPDATE chat_servers c SET assigned_since_beat = c.assigned_since_beat + 1
         FROM least, turn
        WHERE c.id = least.id AND least.place = turn.turn % least.ties
       RETURNING c.url`,
      [healthyWithinMs, avoid],
    )) as [{url: string}[], number]
    return rows[0][0]?.url
  }

  async list(healthyWithinMs: number): Promise<ChatServerRow[]> {
    const rows = (await this.db.query(
      `SELECT id, url, registered_at, last_seen, draining, database_ok, stats, assigned_since_beat,
              (NOT draining AND database_ok AND last_seen > now() - make_interval(secs => $1 / 1000.0)) AS healthy
         FROM chat_servers ORDER BY registered_at, id`,
      [healthyWithinMs],
    )) as RawRow[]
    return rows.map(toRow)
  }

  /** Removes servers silent for longer than `silentForMs`; returns what was removed. */
  async evict(silentForMs: number): Promise<{id: string; url: string}[]> {
    const result = (await this.db.query(
      `DELETE FROM chat_servers WHERE last_seen < now() - make_interval(secs => $1 / 1000.0) RETURNING id, url`,
      [silentForMs],
    )) as [{id: string; url: string}[], number]
    return result[0]
  }
}
