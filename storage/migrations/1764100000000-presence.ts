import type {MigrationInterface, QueryRunner} from 'typeorm'

/**
 * Where each user has a long-poll open: one row per (user, chat server),
 * refreshed while polls keep arriving. A sending server reads it to wake the
 * right peers directly; a stale row only costs a wasted wake-up.
 */
export class Presence1764100000000 implements MigrationInterface {
  name = 'Presence1764100000000'

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE presence (
        user_id    bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        server_url text NOT NULL,
        seen_at    timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (user_id, server_url)
      )`)
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query('DROP TABLE IF EXISTS presence')
  }
}
