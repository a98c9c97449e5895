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
})
