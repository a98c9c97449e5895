import type {MigrationInterface, QueryRunner} from 'typeorm'

/**
 * Issue 16, part 2: delivered receipts. `acks` holds, per user, the highest
 * seq of their stream a client has acknowledged (a poll's `since`, or what a
 * stream wrote); server/delivery/acks.ts raises it and turns the messages it
 * passes into `receipt.delivered` events for their senders. A table of its
 * own, not a column of `inboxes`: its row locks never meet the ones the send
 * path takes on `inboxes`. Existing users start at their stream's head, so
 * an upgrade emits no receipts for the past; users created later have no row
 * until their first acknowledgement, which counts from 0.
 * Nothing is written on the messages themselves: marking each message
 * delivered would rewrite every message row once more (measured: most of
 * the receipts' cost to PostgreSQL in the closed-loop bench).
 */
export class Receipts1766500000000 implements MigrationInterface {
  name = 'Receipts1766500000000'

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE acks (
        user_id bigint PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
        seq     bigint NOT NULL DEFAULT 0
      )`)
    await q.query('INSERT INTO acks (user_id, seq) SELECT user_id, last_seq FROM inboxes')
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query('DROP TABLE IF EXISTS acks')
  }
}
