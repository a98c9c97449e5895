import {randomBytes} from 'node:crypto'
import {mkdtemp} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import type {DataSource} from 'typeorm'

import {canConnect, databasesNamed, dropDatabase, ensureDatabase} from '../../storage/admin.js'
import {openDatabase} from '../../storage/data-source.js'
import {type EmbeddedDatabase, startEmbeddedDatabase} from '../../storage/embedded.js'

/**
 * The suite's database server: DATABASE_URL if set, else the machine's
 * PostgreSQL on 127.0.0.1:5432, else an embedded one in a temp directory.
 * Every run (and every test that needs an empty database) gets its own
 * database on it, dropped at the end.
 */
const MACHINE_POSTGRES = 'postgres://postgres@127.0.0.1:5432/postgres'

let adminUrl: string | undefined
let embedded: EmbeddedDatabase | undefined
const created: string[] = []

export async function databaseServer(): Promise<{adminUrl: string; kind: string}> {
  if (adminUrl) return {adminUrl, kind: embedded ? 'embedded' : 'server'}
  const candidate = process.env.FASTCHAT_TEST_ADMIN_URL ?? MACHINE_POSTGRES
  if (await canConnect(candidate)) {
    adminUrl = candidate
  } else {
    embedded = await startEmbeddedDatabase({dataDir: await mkdtemp(join(tmpdir(), 'fastchat-test-pg-')), ephemeral: true})
    adminUrl = embedded.url
  }
  return {adminUrl, kind: embedded ? 'embedded' : 'server'}
}

/** A new, empty database; `migrated` applies the schema. */
export async function freshDatabase(label: string, options: {migrated?: boolean} = {}): Promise<string> {
  const {adminUrl: admin} = await databaseServer()
  const name = `fastchat_test_${label}_${process.pid}_${randomBytes(3).toString('hex')}`
  created.push(name)
  const url = await ensureDatabase(admin, name)
  if (options.migrated) {
    const db = await openDatabase({url, poolSize: 2})
    await db.destroy()
  }
  return url
}

/** The name every database of this run's workers starts with (mocha --parallel: one database per worker). */
export const workerDatabasePrefix = (run: string): string => `fastchat_test_worker_${run}_`

/** A database of its own for this mocha worker, named so that the main process can drop it at the end. */
export async function workerDatabase(run: string, worker: string): Promise<string> {
  const {adminUrl: admin} = await databaseServer()
  const url = await ensureDatabase(admin, `${workerDatabasePrefix(run)}${worker}`)
  const db = await openDatabase({url, poolSize: 2})
  await db.destroy()
  return url
}

/** Drops the databases freshDatabase() made in this process so far (a worker's, after each file). */
export async function dropCreatedDatabases(): Promise<void> {
  if (!adminUrl) return
  for (const name of created.splice(0)) await dropDatabase(adminUrl, name).catch(() => undefined)
}

export async function dropAllTestDatabases(): Promise<void> {
  if (!adminUrl) return
  const workers = process.env.FASTCHAT_TEST_RUN ? await databasesNamed(adminUrl, workerDatabasePrefix(process.env.FASTCHAT_TEST_RUN)) : []
  for (const name of [...created.splice(0), ...workers]) await dropDatabase(adminUrl, name).catch(() => undefined)
  await embedded?.stop()
}

/** Empties every table (between tests), keeping the schema. */
export async function truncateAll(db: DataSource): Promise<void> {
  const tables = db.entityMetadatas.map((meta) => `"${meta.tableName}"`).join(', ')
  await db.query(`TRUNCATE ${tables} RESTART IDENTITY CASCADE`)
}

