import type {MigrationInterface, QueryRunner} from 'typeorm'

/**
 * Issue 12, holes 4 and 6. The storage quota sums a user's blob sizes before
 * every upload: an index on the uploader that carries the size answers that
 * from the index alone. And a chat server now tells the registry whether its
 * database answers, so one that cannot serve is not assigned.
 */
export class QuotaAndHealth1765000000000 implements MigrationInterface {
  name = 'QuotaAndHealth1765000000000'

  async up(q: QueryRunner): Promise<void> {
    await q.query('CREATE INDEX blobs_uploader_id_idx ON blobs (uploader_id) INCLUDE (size)')
    await q.query('ALTER TABLE chat_servers ADD COLUMN database_ok boolean NOT NULL DEFAULT true')
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query('ALTER TABLE chat_servers DROP COLUMN IF EXISTS database_ok')
    await q.query('DROP INDEX IF EXISTS blobs_uploader_id_idx')
  }
}
