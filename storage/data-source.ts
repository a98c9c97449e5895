import {DataSource} from 'typeorm'

import {entities} from './entities/index.js'
import {migrations} from './migrations/index.js'

export interface DatabaseTimeouts {
  /** A new connection (TCP + auth + the read-write check) that takes longer fails. */
  connectMs: number
  /** Server-side statement_timeout: Postgres cancels a statement running longer (the connection stays usable). */
  statementMs: number
  /** Client-side: a query with no answer after this fails and its connection is destroyed (a silent network: statement_timeout never arrives). Must exceed statementMs. */
  queryMs: number
  /** TCP keepalive idle time on database sockets, so a dead link is noticed on idle connections too. */
  keepAliveMs: number
}
export const DEFAULT_DATABASE_TIMEOUTS: DatabaseTimeouts = {connectMs: 3_000, statementMs: 5_000, queryMs: 7_000, keepAliveMs: 5_000}

export interface DatabaseOptions {
  url: string
  /** Connections in this process's pool. */
  poolSize?: number
  /** Shown in pg_stat_activity, so an operator can tell the processes apart. */
  applicationName?: string
  timeouts?: Partial<DatabaseTimeouts>
}

/** Any constant works; it only has to be the same in every FastChat process. */
const MIGRATION_LOCK_KEY = 0x66_63_68_74 // "fcht"

export function createDataSource(options: DatabaseOptions): DataSource {
  return new DataSource({
    type: 'postgres',
    url: options.url,
    entities,
    migrations,
    migrationsTableName: 'schema_migrations',
    synchronize: false,
    logging: false,
    applicationName: options.applicationName ?? 'fastchat',
    extra: {
      // migrate() holds one connection for its lock while TypeORM migrates on another.
      max: Math.max(2, options.poolSize ?? 10),
      // A dead database must surface as an error, not a hang.
      connectionTimeoutMillis: 5_000,
    },
  })
}

/**
 * Applies pending migrations. Several processes start at once (`fastchat up`),
 * so they queue on a Postgres advisory lock and all but the first find nothing
 * left to do. Returns the names of the migrations this call applied.
 */
export async function migrate(dataSource: DataSource): Promise<string[]> {
  const runner = dataSource.createQueryRunner()
  await runner.connect()
  try {
    await runner.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_KEY])
    const applied = await dataSource.runMigrations({transaction: 'each'})
    return applied.map((migration) => migration.name)
  } finally {
    await runner.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK_KEY]).catch(() => undefined)
    await runner.release()
  }
}

/** Connects and brings the schema up to date: what every process does at start-up. */
export async function openDatabase(options: DatabaseOptions): Promise<DataSource> {
  const dataSource = createDataSource(options)
  await dataSource.initialize()
  try {
    await migrate(dataSource)
  } catch (error) {
    await dataSource.destroy()
    throw error
  }
  return dataSource
}

/** The URL with its password masked, for logs and banners. */
export function redactDatabaseUrl(url: string): string {
  try {
    const parsed = new URL(url)
    if (parsed.password) parsed.password = '***'
    return parsed.toString()
  } catch {
    return '(unparseable database URL)'
  }
}
