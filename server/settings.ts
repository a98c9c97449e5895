import {z} from 'zod'

/**
 * A process's configuration is a table of settings, each with its environment
 * variable, its default (inside the schema) and one line of documentation.
 * Flags win over the environment, the environment over defaults; a bad value
 * stops the process at start-up with the variable's name in the message.
 */
export interface Setting<S extends z.ZodType = z.ZodType> {
  env: string
  doc: string
  schema: S
  /** Never printed, not even in an error message. */
  secret?: boolean
}

export type Settings = Record<string, Setting>
export type Resolved<T extends Settings> = {[K in keyof T]: z.output<T[K]['schema']>}

export class ConfigError extends Error {}

export function resolveSettings<T extends Settings>(
  settings: T,
  flags: Partial<Record<keyof T, unknown>> = {},
  env: NodeJS.ProcessEnv = process.env,
): Resolved<T> {
  const out: Record<string, unknown> = {}
  const problems: string[] = []
  for (const [key, setting] of Object.entries(settings)) {
    const fromFlag = flags[key]
    const fromEnv = env[setting.env]
    const raw = fromFlag ?? (fromEnv === '' ? undefined : fromEnv)
    const result = setting.schema.safeParse(raw)
    if (result.success) {
      out[key] = result.data
    } else {
      const shown = setting.secret || raw === undefined ? '' : ` (got ${JSON.stringify(raw)})`
      problems.push(`${setting.env}${shown}: ${result.error.issues[0]?.message ?? 'invalid'} — ${setting.doc}`)
    }
  }
  if (problems.length > 0) throw new ConfigError(`Invalid configuration:\n  ${problems.join('\n  ')}`)
  return out as Resolved<T>
}

export const port = z.coerce.number().int().min(0).max(65_535)
export const milliseconds = z.coerce.number().int().min(1)
export const httpUrl = z
  .string()
  .url()
  .refine((value) => /^https?:\/\//.test(value), 'must be an http(s) URL')
  .transform((value) => value.replace(/\/+$/, ''))
export const logLevel = z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])
/** on/off, true/false, 1/0, yes/no; flags may pass a real boolean. */
export const onOff = z.union([
  z.boolean(),
  z
    .string()
    .toLowerCase()
    .refine((value) => ['on', 'off', 'true', 'false', '1', '0', 'yes', 'no'].includes(value), 'must be on or off')
    .transform((value) => ['on', 'true', '1', 'yes'].includes(value)),
])

/**
 * The database and the bounded waits on it (docs/operations.md, "PostgreSQL:
 * several hosts and failover"), shared by the chat server and the superserver:
 * every wait on the database ends, and
 * a request that hits one is answered 503 FC_DATABASE_UNAVAILABLE, never a hang.
 */
export const databaseSettings = {
  databaseUrl: {
    env: 'DATABASE_URL',
    doc: 'PostgreSQL connection URL; several hosts (postgres://u:p@h1:5432,h2:5432/db) connect to the one that accepts writes.',
    schema: z.string().min(1),
    secret: true,
  },
  dbConnectTimeoutMs: {
    env: 'FASTCHAT_DB_CONNECT_TIMEOUT_MS',
    doc: 'A new database connection (TCP, authentication, the read-write check) that takes longer fails; the request that waited for it gets 503.',
    schema: milliseconds.default(3_000),
  },
  dbStatementTimeoutMs: {
    env: 'FASTCHAT_DB_STATEMENT_TIMEOUT_MS',
    doc: 'PostgreSQL cancels a statement that runs longer (statement_timeout); every request statement takes milliseconds, so this only ends runaway ones. Uploads, migrations and housekeeping (60 s) have their own.',
    schema: milliseconds.default(5_000),
  },
  dbQueryTimeoutMs: {
    env: 'FASTCHAT_DB_QUERY_TIMEOUT_MS',
    doc: 'A query with no answer after this fails and its connection is closed: a silent network (a cut, a dead machine) never returns the statement timeout. Above the statement timeout, so a reachable database answers first.',
    schema: milliseconds.default(7_000),
  },
  dbKeepAliveMs: {
    env: 'FASTCHAT_DB_KEEPALIVE_MS',
    doc: 'TCP keepalive idle time on database connections, so that a dead link is noticed on idle pooled connections too, not by the next request.',
    schema: milliseconds.default(5_000),
  },
}

/** The `timeouts` storage/data-source.ts takes, from a process's resolved database settings. */
export function databaseTimeouts(config: Resolved<typeof databaseSettings>): {connectMs: number; statementMs: number; queryMs: number; keepAliveMs: number} {
  if (config.dbQueryTimeoutMs <= config.dbStatementTimeoutMs) {
    throw new ConfigError('FASTCHAT_DB_QUERY_TIMEOUT_MS must be above FASTCHAT_DB_STATEMENT_TIMEOUT_MS: a reachable database cancels the statement first and the connection stays usable.')
  }
  return {connectMs: config.dbConnectTimeoutMs, statementMs: config.dbStatementTimeoutMs, queryMs: config.dbQueryTimeoutMs, keepAliveMs: config.dbKeepAliveMs}
}
