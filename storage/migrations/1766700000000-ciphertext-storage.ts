import type {MigrationInterface, QueryRunner} from 'typeorm'

/**
 * Ciphertexts do not compress, so PostgreSQL should not try. A value over
 * ~2 KB is TOASTed, and by default (`EXTENDED`) pglz first runs over all of
 * it, then gives up as the gain is under 25%: a read receipts' event holds a
 * dozen receipts of ~700 bytes of OpenPGP each, and that attempt was most of
 * its insert's cost (~200 µs against ~55 µs for a 13 KB row, measured).
 * `EXTERNAL` stores such values out of line, uncompressed, at once. Only
 * rows written from now on are concerned; nothing is rewritten.
 */
export class CiphertextStorage1766700000000 implements MigrationInterface {
  name = 'CiphertextStorage1766700000000'

  async up(q: QueryRunner): Promise<void> {
    await q.query('ALTER TABLE events ALTER COLUMN payload SET STORAGE EXTERNAL')
    await q.query('ALTER TABLE messages ALTER COLUMN ciphertext SET STORAGE EXTERNAL')
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query('ALTER TABLE events ALTER COLUMN payload SET STORAGE EXTENDED')
    await q.query('ALTER TABLE messages ALTER COLUMN ciphertext SET STORAGE EXTENDED')
  }
}
