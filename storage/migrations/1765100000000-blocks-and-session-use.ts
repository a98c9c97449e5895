import type {MigrationInterface, QueryRunner} from 'typeorm'

/**
 * Block lists, and when each session was last used.
 *
 * `blocks` is read on every send: a 1:1 send looks up (recipient, sender) by
 * the primary key inside its one statement, a group send looks up the
 * sender's blockers by `blocks_blocked_id_idx` (usually none) inside the
 * epoch query it runs anyway.
 *
 * `sessions.last_used_at` ends sessions left unused (FASTCHAT_SESSION_IDLE_HOURS);
 * it is written at most once an hour per session, not on every request.
 */
export class BlocksAndSessionUse1765100000000 implements MigrationInterface {
  name = 'BlocksAndSessionUse1765100000000'

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE blocks (
        blocker_id bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        blocked_id bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        created_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (blocker_id, blocked_id),
        CHECK (blocker_id <> blocked_id)
      )`)
    await q.query(`CREATE INDEX blocks_blocked_id_idx ON blocks (blocked_id)`)
    await q.query(`ALTER TABLE sessions ADD COLUMN last_used_at timestamptz NOT NULL DEFAULT now()`)
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query('ALTER TABLE sessions DROP COLUMN IF EXISTS last_used_at')
    await q.query('DROP TABLE IF EXISTS blocks')
  }
}
