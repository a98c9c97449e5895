import type {DataSource, EntityManager} from 'typeorm'

/**
 * Presence as people see it (server/services/presence.ts): each user's
 * setting, who may see whose, and to whom a change is announced. The state
 * itself (users.presence_online, last_seen_at) is written by
 * PresenceRepository.record and sweepOffline.
 */

/**
 * A 1:1 conversation counts as "X wrote to Y" when one of its last this many
 * messages is X's: read newest first on messages_conversation_idx and cut
 * there, so the check costs at most this many index entries, whoever sent
 * how much, and no index on messages is added (sends stay as cheap).
 */
export const CONVERSATION_WINDOW = 1_000
/** An announcement looks for its 1:1 audience among the senders of this many most recent events of the user's own stream. */
export const RECENT_EVENTS_SCANNED = 1_000

/**
 * SQL, true when the user `$viewer` may see the presence of `target`: it is
 * themselves, or `target` does not block them and either wrote to them (one
 * of the last CONVERSATION_WINDOW messages of their conversation is
 * `target`'s) or both are joined members of one group.
 */
const mayShowTo = (target: string, viewer: string) => `(${target} = ${viewer} OR (
         NOT EXISTS (SELECT 1 FROM blocks b WHERE b.blocker_id = ${target} AND b.blocked_id = ${viewer})
         AND (EXISTS (SELECT 1 FROM (SELECT m.sender_id FROM messages m
                                      WHERE m.conversation = 'u:' || least(${target}, ${viewer}) || ':' || greatest(${target}, ${viewer})
                                      ORDER BY m.sent_at DESC, m.id DESC LIMIT ${CONVERSATION_WINDOW}) recent
                       WHERE recent.sender_id = ${target})
              OR EXISTS (SELECT 1 FROM group_members theirs JOIN group_members mine ON mine.group_id = theirs.group_id AND mine.user_id = ${viewer}
                          WHERE theirs.user_id = ${target}))))`

export interface PresenceRow {
  /** The name as asked (a username key); null fields: no such user. */
  key: string
  username: string | null
  hidden: boolean | null
  online: boolean | null
  lastSeen: Date | null
  visible: boolean | null
}

export interface OwnPresenceRow {
  hidden: boolean
  online: boolean
  lastSeen: Date | null
}

export class PresenceVisibilityRepository {
  constructor(private readonly db: DataSource) {}

  /**
   * For each username key, in order: the user, their state (online only
   * while their last poll is within `offlineMs`, whether or not a sweep ran)
   * and whether `viewerId` may see it.
   */
  async lookup(viewerId: string, keys: string[], offlineMs: number): Promise<PresenceRow[]> {
    return (await this.db.query(
      `SELECT t.key, u.username, u.presence_hidden AS hidden,
              (u.presence_online AND u.last_seen_at > now() - make_interval(secs => $3 / 1000.0)) AS online,
              u.last_seen_at AS "lastSeen",
              CASE WHEN u.id IS NULL THEN NULL ELSE ${mayShowTo('u.id', '$1::bigint')} END AS visible
         FROM unnest($2::text[]) WITH ORDINALITY AS t(key, ord)
         LEFT JOIN users u ON u.username_key = t.key
        ORDER BY t.ord`,
      [viewerId, keys, offlineMs],
    )) as PresenceRow[]
  }

  async own(userId: string, offlineMs: number): Promise<OwnPresenceRow> {
    const [row] = (await this.db.query(
      `SELECT presence_hidden AS hidden, (presence_online AND last_seen_at > now() - make_interval(secs => $2 / 1000.0)) AS online,
              last_seen_at AS "lastSeen"
         FROM users WHERE id = $1`,
      [userId, offlineMs],
    )) as OwnPresenceRow[]
    return row ?? {hidden: false, online: false, lastSeen: null}
  }

  /**
   * Shows or hides a user's presence. Hiding also forgets their last seen
   * and announced state, so showing it again reveals nothing of the time it
   * was hidden: they are offline, never seen, until their next poll is recorded.
   */
  async setVisible(userId: string, visible: boolean): Promise<void> {
    await this.db.query(
      visible
        ? 'UPDATE users SET presence_hidden = false WHERE id = $1 AND presence_hidden'
        : 'UPDATE users SET presence_hidden = true, presence_online = false, last_seen_at = NULL WHERE id = $1',
      [userId],
    )
  }

  /**
   * Inside the caller's transaction: the user's name and state, the row
   * held (FOR SHARE) until commit, so that hiding (an UPDATE of that row)
   * waits for an announcement under way, and one that starts after hiding
   * sees it and announces nothing.
   */
  async hold(tx: EntityManager, userId: string): Promise<{username: string; hidden: boolean; online: boolean; lastSeen: Date | null} | undefined> {
    const [row] = (await tx.query(
      'SELECT username, presence_hidden AS hidden, presence_online AS online, last_seen_at AS "lastSeen" FROM users WHERE id = $1 FOR SHARE',
      [userId],
    )) as {username: string; hidden: boolean; online: boolean; lastSeen: Date | null}[]
    return row
  }

  /**
   * Who hears of the user's presence changes, at most `max` of them: those
   * whom they wrote to and who wrote to them, found among the senders of
   * their own stream's RECENT_EVENTS_SCANNED latest events, most recent
   * first; never anyone they block; and only those listening now (a poll or
   * stream of theirs recorded within `listeningWithinMs`): a presence change
   * is news now, not for a month of retention, and someone who comes back
   * asks GET /v1/presence. Group members who never wrote to each other are
   * not told (they may still ask): in a group of a thousand, every member's
   * coming and going would be written into every other member's stream.
   * Every one of them may see the user's presence (mayShowTo).
   */
  async audience(tx: EntityManager, userId: string, max: number, listeningWithinMs: number): Promise<string[]> {
    const rows = (await tx.query(
      `WITH recent AS (
         SELECT message_id, seq FROM events WHERE recipient_id = $1 ORDER BY seq DESC LIMIT ${RECENT_EVENTS_SCANNED}
       ), partners AS (
         SELECT m.sender_id AS id, max(r.seq) AS last FROM recent r JOIN messages m ON m.id = r.message_id
          WHERE m.recipient_id = $1 GROUP BY m.sender_id
       ), direct AS (
         SELECT p.id, p.last FROM partners p
          WHERE EXISTS (SELECT 1 FROM (SELECT m.sender_id FROM messages m
                                        WHERE m.conversation = 'u:' || least(p.id, $1::bigint) || ':' || greatest(p.id, $1::bigint)
                                        ORDER BY m.sent_at DESC, m.id DESC LIMIT ${CONVERSATION_WINDOW}) x
                         WHERE x.sender_id = $1)
       )
       SELECT d.id::text AS id FROM direct d
        WHERE NOT EXISTS (SELECT 1 FROM blocks b WHERE b.blocker_id = $1 AND b.blocked_id = d.id)
          AND EXISTS (SELECT 1 FROM presence p WHERE p.user_id = d.id AND p.seen_at > now() - make_interval(secs => $3 / 1000.0))
        ORDER BY d.last DESC, d.id LIMIT $2`,
      [userId, max, listeningWithinMs],
    )) as {id: string}[]
    return rows.map((row) => row.id)
  }
}
