import {databaseServer, dropAllTestDatabases, dropCreatedDatabases, freshDatabase, workerDatabase} from './helpers/database.js'
import {stopAllProcesses} from './helpers/processes.js'

/**
 * Mocha root hooks: one throwaway, migrated database for the whole run, its
 * URL in DATABASE_URL for the tests and for every process they start.
 */
export async function mochaGlobalSetup(): Promise<void> {
  const {kind, adminUrl} = await databaseServer()
  process.env.DATABASE_URL = await freshDatabase('run', {migrated: true})
  // With --parallel the workers inherit these: the same database server (not one embedded each), and this run's name.
  process.env.FASTCHAT_TEST_ADMIN_URL = adminUrl
  process.env.FASTCHAT_TEST_RUN = String(process.pid)
  process.env.LOG_LEVEL ??= 'silent'
  // Every test registers and sends from 127.0.0.1, far beyond what one address may
  // in production; rate-limits.test.ts turns the limits on and tests them.
  process.env.FASTCHAT_RATE_LIMITS = 'off'
  console.log(`  (database: ${kind === 'embedded' ? 'embedded PostgreSQL' : 'PostgreSQL server'}, fresh database for this run)`)
}

export async function mochaGlobalTeardown(): Promise<void> {
  await stopAllProcesses()
  await dropAllTestDatabases()
}

/**
 * mocha --parallel (.mocharc.cjs): each worker process runs its files one
 * after the other on a database of its own, as the serial run does on one,
 * because tests count rows and truncate tables. Root hooks run around each
 * file in a worker; the database is made at the worker's first file, and
 * dropped by the main process's teardown. Processes a file started, and
 * databases it made, are stopped and dropped after it.
 */
let ownDatabase: Promise<string> | undefined

export const mochaHooks = {
  async beforeAll(): Promise<void> {
    const worker = process.env.MOCHA_WORKER_ID
    if (worker === undefined || !process.env.FASTCHAT_TEST_RUN) return
    ownDatabase ??= workerDatabase(process.env.FASTCHAT_TEST_RUN, worker)
    process.env.DATABASE_URL = await ownDatabase
  },
  async afterAll(): Promise<void> {
    if (process.env.MOCHA_WORKER_ID === undefined) return
    await stopAllProcesses()
    await dropCreatedDatabases()
  },
}
