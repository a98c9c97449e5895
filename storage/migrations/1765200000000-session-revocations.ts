import type {MigrationInterface, QueryRunner} from 'typeorm'

/**
 * The session revocation feed (docs/architecture.md, "Sessions"): chat
 * servers answer tokens from memory, and learn of logouts by reading this
 * table every 250 ms with `WHERE id > $last` (the primary key, so the cost
 * does not grow with traffic or with the table). A row names one token
 * (`token_hash`, a logout) or every session of a user (`user_id`, "log out
 * everywhere"). Writers take a lock on the table until they commit, so ids
 * become visible in order and `id > $last` never skips one. Rows are pruned
 * after 10 minutes; a server that has not read the feed for half that long
 * empties its cache.
 */
export class SessionRevocations1765200000000 implements MigrationInterface {
  name = 'SessionRevocations1765200000000'

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE session_revocations (
        id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        token_hash bytea,
        user_id    bigint,
        at         timestamptz NOT NULL DEFAULT now(),
        CHECK (token_hash IS NOT NULL OR user_id IS NOT NULL)
      )`)
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query('DROP TABLE IF EXISTS session_revocations')
  }
}
