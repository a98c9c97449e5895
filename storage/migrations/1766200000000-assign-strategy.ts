import type {MigrationInterface, QueryRunner} from 'typeorm'

/**
 * Issue 14, item 7: the superserver may assign the least-loaded chat server.
 * Its load is what the last heartbeat said (open polls and streams, in
 * `stats`) plus the clients assigned to it since, counted here and reset by
 * the next heartbeat, so a burst of assignments between two heartbeats does
 * not all go to the server that looked emptiest.
 */
export class AssignStrategy1766200000000 implements MigrationInterface {
  name = 'AssignStrategy1766200000000'

  async up(q: QueryRunner): Promise<void> {
    await q.query('ALTER TABLE chat_servers ADD COLUMN assigned_since_beat integer NOT NULL DEFAULT 0')
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query('ALTER TABLE chat_servers DROP COLUMN IF EXISTS assigned_since_beat')
  }
}
