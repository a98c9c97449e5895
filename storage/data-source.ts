import type pg from 'pg'
import {DataSource, MigrationExecutor, type QueryRunner} from 'typeorm'

import {entities} from './entities/index.js'
import {migrations} from './migrations/index.js'
import {fastChatClientClass, type FastChatClient, isFastChatClient} from './pg-client.js'
import {type DatabaseTarget, parseDatabaseUrl, redactMultiHostUrl} from './pg-hosts.js'

/**
 * Every wait on the database is bounded (docs/operations.md, "PostgreSQL:
 * several hosts and failover"): a request meets a dead, partitioned or
 * read-only database with a 503 after these, never a hang.
 */
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
  /** A PostgreSQL URL; several hosts as libpq writes them (h1:5432,h2:5432) are tried for one that takes writes (./pg-hosts.ts). */
  url: string
  /** Connections in this process's pool. */
  poolSize?: number
  /** Shown in pg_stat_activity, so an operator can tell the processes apart. */
  applicationName?: string
  timeouts?: Partial<DatabaseTimeouts>
}

/** Any constant works; it only has to be the same in every FastChat process. */
const MIGRATION_LOCK_KEY = 0x66_63_68_74 // "fcht"
/** The longest a request waits for a free pooled connection (more if one connection attempt may take longer). */
const POOL_WAIT_MS = 5_000
/**
 * Housekeeping (prunes, garbage collection) deletes in bulk, off the request
 * path, once a period: its statements may run this long instead of the
 * request statement timeout, which a large backlog would always hit.
 */
export const HOUSEKEEPING_STATEMENT_MS = 60_000

/** What createDataSource made a data source from, for pools of its own (uploads) and long statements. */
interface Database {
  url: string
  target: DatabaseTarget
  timeouts: DatabaseTimeouts
  applicationName: string
  Client: ReturnType<typeof fastChatClientClass>
}
/**
 * Where a data source keeps its Database. A registered symbol rather than a
 * module-level map: a test runner may load this module twice (required and
 * imported), and both copies must find it.
 */
const DATABASE = Symbol.for('fastchat.storage.database')

function resolveTimeouts(given: Partial<DatabaseTimeouts> = {}): DatabaseTimeouts {
  const timeouts = {...DEFAULT_DATABASE_TIMEOUTS, ...given}
  for (const [name, value] of Object.entries(timeouts)) {
    if (!Number.isInteger(value) || value <= 0) throw new Error(`database timeout ${name} must be a positive number of milliseconds`)
  }
  if (timeouts.queryMs <= timeouts.statementMs) {
    throw new Error('the database query timeout must exceed the statement timeout: a reachable database cancels the statement first, keeping the connection')
  }
  return timeouts
}

/**
 * The node-pg pool configuration for `database`: the main pool, or (`longRunning`)
 * one whose connections are held for a whole transfer and so get no statement
 * or query timeout, only keepalive and the connect timeout. The one place
 * connections are configured, so that every pool reaches the same hosts the same way.
 */
function poolConfig(database: Database, pool: {max: number; waitMs?: number; longRunning?: boolean}): pg.PoolConfig {
  const {target, timeouts} = database
  // A search over several hosts probes each (one connect budget apiece), then connects.
  const attemptMs = timeouts.connectMs * (target.routed ? target.hosts.length + 1 : 1)
  return {
    // One host and no target: the URL goes to node-pg as it is.
    connectionString: target.routed ? target.urlFor(target.hosts[0]!) : database.url,
    application_name: database.applicationName,
    Client: database.Client as unknown as pg.PoolConfig['Client'],
    max: pool.max,
    connectionTimeoutMillis: Math.max(pool.waitMs ?? POOL_WAIT_MS, attemptMs),
    keepAlive: true,
    keepAliveInitialDelayMillis: timeouts.keepAliveMs,
    // A transaction left open by a stalled process would hold its locks and a connection; requests never idle in one.
    idle_in_transaction_session_timeout: 2 * timeouts.statementMs,
    // No lock_timeout of its own: a lock wait is part of its statement, which statement_timeout already bounds.
    ...(pool.longRunning ? {} : {statement_timeout: timeouts.statementMs, query_timeout: timeouts.queryMs}),
  }
}

export function createDataSource(options: DatabaseOptions): DataSource {
  const target = parseDatabaseUrl(options.url)
  const timeouts = resolveTimeouts(options.timeouts)
  const applicationName = options.applicationName ?? 'fastchat'
  const probe = {application_name: applicationName, keepAlive: true, keepAliveInitialDelayMillis: timeouts.keepAliveMs}
  const database: Database = {url: options.url, target, timeouts, applicationName, Client: fastChatClientClass({target, connectMs: timeouts.connectMs, probe})}
  const dataSource = new DataSource({
    type: 'postgres',
    // TypeORM reads the database name from it; the pool connects as `extra` says.
    url: target.routed ? target.urlFor(target.hosts[0]!) : options.url,
    entities,
    migrations,
    migrationsTableName: 'schema_migrations',
    synchronize: false,
    logging: false,
    applicationName,
    // migrate() and housekeeping() hold a connection for a while: a second one keeps requests going meanwhile.
    extra: poolConfig(database, {max: Math.max(2, options.poolSize ?? 10)}),
  })
  Object.defineProperty(dataSource, DATABASE, {value: database})
  return dataSource
}

function databaseOf(dataSource: DataSource): Database {
  const database = (dataSource as unknown as {[DATABASE]?: Database})[DATABASE]
  if (!database) throw new Error('not a data source made by createDataSource()')
  return database
}

/** The configuration of a pool of its own next to `dataSource`'s, for connections held as long as a transfer (uploads). */
export function longRunningPoolConfig(dataSource: DataSource, pool: {max: number; waitMs: number}): pg.PoolConfig {
  return poolConfig(databaseOf(dataSource), {...pool, longRunning: true})
}

const clientOf = (runner: QueryRunner): FastChatClient | undefined => {
  const client = (runner as unknown as {databaseConnection?: unknown}).databaseConnection
  return isFastChatClient(client) ? client : undefined
}

/**
 * Applies pending migrations. Several processes start at once (`fastchat up`),
 * so they queue on a Postgres advisory lock and all but the first find nothing
 * left to do. Returns the names of the migrations this call applied. The wait
 * and the migrations run on one connection without statement or query
 * timeout: rewriting a large table, or waiting for another process that does,
 * takes what it takes.
 */
export async function migrate(dataSource: DataSource): Promise<string[]> {
  const runner = dataSource.createQueryRunner()
  await runner.connect()
  const client = clientOf(runner)
  const queryTimeout = client?.setQueryTimeout(0)
  try {
    await runner.query('SET statement_timeout = 0')
    await runner.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_KEY])
    const executor = new MigrationExecutor(dataSource, runner)
    executor.transaction = 'each'
    const applied = await executor.executePendingMigrations()
    return applied.map((migration) => migration.name)
  } finally {
    await runner.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK_KEY]).catch(() => undefined)
    await runner.query('RESET statement_timeout').catch(() => undefined)
    if (client && queryTimeout !== undefined) client.setQueryTimeout(queryTimeout)
    await runner.release()
  }
}

/** Runs a statement on the transaction housekeeping() opened; answers as DataSource.query does. */
export type HousekeepingQuery = (sql: string, parameters?: unknown[]) => Promise<any>

/**
 * Runs housekeeping `work` in one transaction whose statements may take
 * HOUSEKEEPING_STATEMENT_MS, client side too. It waits for a lock no longer
 * than a request statement may run: rows it deleted stay locked until it
 * commits, so it gives way (and runs again next period) rather than keep
 * requests waiting behind it.
 */
export async function housekeeping<T>(dataSource: DataSource, work: (query: HousekeepingQuery) => Promise<T>): Promise<T> {
  const {timeouts} = databaseOf(dataSource)
  const runner = dataSource.createQueryRunner()
  await runner.connect()
  const client = clientOf(runner)
  const queryTimeout = client?.setQueryTimeout(HOUSEKEEPING_STATEMENT_MS + (timeouts.queryMs - timeouts.statementMs))
  try {
    await runner.startTransaction()
    try {
      await runner.query(`SET LOCAL statement_timeout = ${HOUSEKEEPING_STATEMENT_MS}`)
      await runner.query(`SET LOCAL lock_timeout = ${timeouts.statementMs}`)
      const result = await work((sql, parameters) => runner.query(sql, parameters))
      await runner.commitTransaction()
      return result
    } catch (error) {
      await runner.rollbackTransaction().catch(() => undefined)
      throw error
    }
  } finally {
    if (client && queryTimeout !== undefined) client.setQueryTimeout(queryTimeout)
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
    // Several hosts (h1:5432,h2:5432) are no WHATWG URL.
    return redactMultiHostUrl(url) ?? '(unparseable database URL)'
  }
}
