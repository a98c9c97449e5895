import {databaseServer, dropAllTestDatabases, freshDatabase} from './helpers/database.js'
import {stopAllProcesses} from './helpers/processes.js'

/**
 * Mocha root hooks: one throwaway, migrated database for the whole run, its
 * URL in DATABASE_URL for the tests and for every process they start.
 */
export async function mochaGlobalSetup(): Promise<void> {
  const {kind} = await databaseServer()
  process.env.DATABASE_URL = await freshDatabase('run', {migrated: true})
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
