import type {MigrationInterface, QueryRunner} from 'typeorm'

/**
 * Issue 16, part 3: presence for people (`fastchat who`), beside the
 * `presence` table that routes peer pushes.
 *
 * - `last_seen_at`: written by the statement that records presence (at most
 *   once per refresh interval per user per server), so it is as coarse as
 *   that interval; NULL while the user hides their presence.
 * - `presence_online`: the announced state. It turns true at the first poll
 *   after being false, and false only when `last_seen_at` is older than
 *   FASTCHAT_PRESENCE_OFFLINE_MS (a sweep), each under a conditional UPDATE,
 *   so two servers announce a change once, not twice.
 * - `presence_hidden`: the user's choice; hidden shows to nobody.
 *
 * The partial index holds only the users online now, by last seen: each
 * sweep (every few seconds per server) reads just the stale ones. Sends never
 * write these columns. A presence refresh (one per user per 30 s per server,
 * batched) moves the user's entry in it, so that update is not HOT and also
 * writes the users table's other two indexes: the price of a sweep that does
 * not read every online user. No index is added on `messages`: who may see
 * whom is checked through `messages_conversation_idx`, bounded
 * (storage/repositories/presence-visibility.repository.ts).
 */
export class PresenceVisibility1766600000000 implements MigrationInterface {
  name = 'PresenceVisibility1766600000000'

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      ALTER TABLE users
        ADD COLUMN last_seen_at    timestamptz,
        ADD COLUMN presence_online boolean NOT NULL DEFAULT false,
        ADD COLUMN presence_hidden boolean NOT NULL DEFAULT false`)
    await q.query('CREATE INDEX users_presence_online_idx ON users (last_seen_at) WHERE presence_online')
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query('DROP INDEX IF EXISTS users_presence_online_idx')
    await q.query('ALTER TABLE users DROP COLUMN IF EXISTS presence_hidden, DROP COLUMN IF EXISTS presence_online, DROP COLUMN IF EXISTS last_seen_at')
  }
}
