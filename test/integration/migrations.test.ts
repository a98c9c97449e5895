import {expect} from 'chai'

import {createDataSource, migrate} from '../../storage/data-source.js'
import {migrations} from '../../storage/migrations/index.js'
import {freshDatabase} from '../helpers/database.js'

const ALL_MIGRATIONS = migrations.map((migration) => migration.name)

describe('migrations', () => {
  const expectedTables = [
    'acks', 'blob_chunks', 'blobs', 'blocks', 'chat_servers', 'device_links', 'events', 'group_epochs', 'group_invitations', 'group_keys', 'group_members', 'groups',
    'inboxes', 'messages', 'presence', 'schema_migrations', 'session_revocations', 'sessions', 'users',
  ]

  it('apply to an empty database and are idempotent', async () => {
    const db = createDataSource({url: await freshDatabase('migrate')})
    await db.initialize()
    try {
      const before = await db.query(`SELECT count(*)::int AS n FROM information_schema.tables WHERE table_schema = 'public'`)
      expect(before[0].n).to.equal(0)

      expect(await migrate(db)).to.deep.equal(ALL_MIGRATIONS)
      const tables = await db.query(`SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1`)
      expect(tables.map((t: {table_name: string}) => t.table_name)).to.deep.equal(expectedTables)

      expect(await migrate(db)).to.deep.equal([])
      expect(await db.showMigrations()).to.equal(false)
    } finally {
      await db.destroy()
    }
  })

  it('run once when several processes start at the same time', async () => {
    const url = await freshDatabase('race')
    const sources = [1, 2, 3, 4].map(() => createDataSource({url, poolSize: 2}))
    await Promise.all(sources.map((s) => s.initialize()))
    try {
      const applied = await Promise.all(sources.map((s) => migrate(s)))
      expect(applied.flat()).to.deep.equal(ALL_MIGRATIONS)
      const rows = await sources[0]!.query('SELECT count(*)::int AS n FROM schema_migrations')
      expect(rows[0].n).to.equal(ALL_MIGRATIONS.length)
    } finally {
      await Promise.all(sources.map((s) => s.destroy()))
    }
  })

  // Constraints and indexes live in the migrations only; columns, types and
  // defaults must match the entities, or TypeORM would read and write wrong shapes.
  it('leave columns that TypeORM agrees with the entities on', async () => {
    const db = createDataSource({url: await freshDatabase('drift')})
    await db.initialize()
    try {
      await migrate(db)
      // What `synchronize` would change is what the migrations forgot.
      const sql = await db.driver.createSchemaBuilder().log()
      const drift = sql.upQueries
        .map((q) => q.query)
        .filter((q) => /CREATE TABLE|ADD COLUMN|DROP COLUMN|ALTER COLUMN|ADD "/.test(q))
      expect(drift, drift.join('\n')).to.deep.equal([])
    } finally {
      await db.destroy()
    }
  })

  // Ciphertexts do not compress: a big one (a read receipts' event holds a dozen) is stored as it is,
  // without PostgreSQL's pglz first running over all of it in vain.
  it('store ciphertexts out of line without trying to compress them', async () => {
    const db = createDataSource({url: await freshDatabase('storage')})
    await db.initialize()
    try {
      await migrate(db)
      const storage = await db.query(
        `SELECT c.relname AS "table", a.attname AS "column", a.attstorage AS storage FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
          WHERE (c.relname, a.attname) IN (('events', 'payload'), ('messages', 'ciphertext')) ORDER BY 1`,
      )
      expect(storage).to.deep.equal([
        {table: 'events', column: 'payload', storage: 'e'},
        {table: 'messages', column: 'ciphertext', storage: 'e'},
      ])
      // Twelve copies of one 700-byte text would compress well; stored EXTERNAL they take their full size.
      const receipt = 'wV4D'.padEnd(700, 'A')
      const payload = JSON.stringify({receipts: Array.from({length: 12}, (_, i) => ({from: `reader${i}`, ciphertext: receipt}))})
      const [user] = await db.query(`INSERT INTO users (username, username_key, password_hash, public_key, fingerprint) VALUES ('alice', 'alice', '', '', '') RETURNING id`)
      await db.query(`INSERT INTO events (recipient_id, seq, type, payload) VALUES ($1, 1, 'receipt.read', $2)`, [user.id, payload])
      const [row] = await db.query(`SELECT pg_column_size(payload) AS size FROM events WHERE recipient_id = $1 AND seq = 1`, [user.id])
      expect(row.size).to.be.greaterThan(12 * 700)
    } finally {
      await db.destroy()
    }
  })
})
