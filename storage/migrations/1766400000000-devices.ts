import type {MigrationInterface, QueryRunner} from 'typeorm'

/**
 * Several devices per person (docs/architecture.md, "Devices"). A device is a
 * session with a name: `sessions.id` is its public handle (the token hash
 * stays secret), `device_name` what `fastchat device list` shows. Its last
 * activity is `last_used_at`, recorded at most once an hour (no new column:
 * a second timestamp refreshed in the same place would only repeat it).
 *
 * `device_links` holds the requests of new devices waiting for an approval
 * (`fastchat device link` / `approve`): a one-time public key, a check
 * encrypted under the code's secret half (which the server never sees), and,
 * once approved, the ciphertext for the new device. `secret_hash` is the
 * SHA-256 of the new device's polling secret. Rows live a few minutes and are
 * pruned with expired sessions; `consumed_at` marks a link whose session was
 * handed out (single use: a second approval or poll gets 409).
 */
export class Devices1766400000000 implements MigrationInterface {
  name = 'Devices1766400000000'

  async up(q: QueryRunner): Promise<void> {
    // Existing sessions get an id here; new ones get theirs from the server (SessionRepository).
    await q.query(`ALTER TABLE sessions ADD COLUMN id uuid NOT NULL DEFAULT gen_random_uuid(),
      ADD COLUMN device_name text NOT NULL DEFAULT 'unnamed'`)
    await q.query('ALTER TABLE sessions ALTER COLUMN id DROP DEFAULT')
    await q.query('CREATE UNIQUE INDEX sessions_id_idx ON sessions (id)')
    await q.query(`
      CREATE TABLE device_links (
        code         text PRIMARY KEY,
        secret_hash  bytea NOT NULL,
        public_key   text NOT NULL,
        check_text   text NOT NULL,
        name         text NOT NULL,
        created_at   timestamptz NOT NULL DEFAULT now(),
        expires_at   timestamptz NOT NULL,
        approved_by  bigint REFERENCES users(id) ON DELETE CASCADE,
        ciphertext   text,
        consumed_at  timestamptz
      )`)
    await q.query('CREATE INDEX device_links_expires_at_idx ON device_links (expires_at)')
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query('DROP TABLE IF EXISTS device_links')
    await q.query('DROP INDEX IF EXISTS sessions_id_idx')
    await q.query('ALTER TABLE sessions DROP COLUMN IF EXISTS device_name, DROP COLUMN IF EXISTS id')
  }
}
