import pg from 'pg'

import type {DatabaseTarget, PgHost, TargetSessionAttrs} from './pg-hosts.js'

/**
 * The node-pg client every FastChat pool makes its connections with
 * (docs/operations.md, "PostgreSQL: several hosts and failover"). Two things
 * node-pg does not do by itself:
 *
 * - A connection whose query got no answer within query_timeout is closed,
 *   not pooled again: node-pg fails the query but leaves it running on the
 *   connection, so the next user of it would wait behind it (or, on a link
 *   that came back, read its late answer). The same for a connection whose
 *   server turned read-only under it (SQLSTATE 25006).
 * - With several hosts (libpq's multi-host URL, ./pg-hosts.ts), each new
 *   connection goes to one that takes writes, as libpq's
 *   target_session_attrs=read-write does: the host that last did, else the
 *   hosts in turn, each tried on a short-lived probe connection first.
 */

/** node-pg's message for a query that got no answer within query_timeout. */
const QUERY_READ_TIMEOUT = 'Query read timeout'
/** SQLSTATE read_only_sql_transaction: the server is (now) a standby. */
const READ_ONLY_SQL_TRANSACTION = '25006'

/** SQLSTATE class 08 (connection exception), so that every caller treats it as the database being unavailable. */
export class DatabaseConnectError extends Error {
  readonly code = '08001'
}

/** No host of the URL accepted a connection that can write. */
export class NoWritableHostError extends DatabaseConnectError {
  constructor(hosts: number) {
    super(`none of the ${hosts} database hosts accepts writes`)
  }
}

/** The host answered but does not take writes (a standby). */
class ReadOnlyHostError extends DatabaseConnectError {
  constructor() {
    super('the database host does not accept writes')
  }
}

export interface ClientSettings {
  target: DatabaseTarget
  /** Budget of one connection attempt: TCP, authentication and the read-write check. */
  connectMs: number
  /** What a probe connection is opened with besides its URL (application name, keepalive). */
  probe?: pg.ClientConfig
}

/** A connection of one of our pools, with its query timeout adjustable for long statements (migrations, housekeeping). */
export interface FastChatClient extends pg.Client {
  /** The client-side query timeout from now on (0: none). Returns the one before. */
  setQueryTimeout(ms: number): number
}

export const isFastChatClient = (client: unknown): client is FastChatClient => typeof (client as FastChatClient | undefined)?.setQueryTimeout === 'function'

/** Whether the session on `client` is one the target accepts, asked within `timeoutMs`. */
async function accepts(client: pg.Client, target: TargetSessionAttrs, timeoutMs: number): Promise<boolean> {
  if (target === 'any') return true
  const text = target === 'read-write' ? 'SHOW transaction_read_only' : 'SELECT pg_catalog.pg_is_in_recovery()::text AS transaction_read_only'
  const result = await client.query<{transaction_read_only: string}>({text, query_timeout: timeoutMs} as pg.QueryConfig)
  return result.rows[0]?.transaction_read_only === (target === 'read-write' ? 'off' : 'false')
}

/**
 * Which host new connections go to. Shared by every pool of one database
 * (the main pool and the upload pool), so they find a promoted standby once.
 */
export class HostRouter {
  /** Where the next search starts: the host that last worked, or the one after the one that last failed. */
  private start = 0
  private current: PgHost | undefined
  private search: Promise<PgHost> | undefined

  constructor(
    private readonly hosts: PgHost[],
    /** Whether `host` takes a connection of the wanted kind (a probe connection, closed after). */
    private readonly probe: (host: PgHost) => Promise<boolean>,
  ) {}

  /** The host that last worked; else the first in turn that passes the probe (one search at a time, shared). */
  pick(): Promise<PgHost> {
    if (this.current) return Promise.resolve(this.current)
    this.search ??= this.find().finally(() => (this.search = undefined))
    return this.search
  }

  worked(host: PgHost): void {
    this.current = host
    this.start = this.hosts.indexOf(host)
  }

  failed(host: PgHost): void {
    if (this.current === host) this.current = undefined
    if (this.hosts[this.start] === host) this.start = (this.start + 1) % this.hosts.length
  }

  private async find(): Promise<PgHost> {
    const first = this.start
    for (let i = 0; i < this.hosts.length; i++) {
      const host = this.hosts[(first + i) % this.hosts.length]!
      if (await this.probe(host).catch(() => false)) {
        this.worked(host)
        return host
      }
    }
    throw new NoWritableHostError(this.hosts.length)
  }
}

/** Connect errors carry a SQLSTATE-like code (08001) unless they have a code of their own (ECONNREFUSED...). */
function asConnectError(error: unknown): unknown {
  if (typeof (error as {code?: unknown} | undefined)?.code === 'string') return error
  return new DatabaseConnectError('could not connect to the database', {cause: error})
}

const ignore = (): void => undefined

/** A query object node-pg submits as it is (pg-copy-streams' COPY TO and FROM): an event emitter. */
interface Submittable {
  submit: unknown
  once(event: string, listener: (error: unknown) => void): unknown
}

/** Opens a short-lived connection to `host` and tells whether it is one the target accepts. */
async function probe({target, connectMs, probe: config}: ClientSettings, host: PgHost): Promise<boolean> {
  const client = new pg.Client({...config, connectionString: target.urlFor(host), connectionTimeoutMillis: connectMs})
  client.on('error', ignore)
  const started = Date.now()
  try {
    await client.connect()
    return await accepts(client, target.targetSessionAttrs, Math.max(1, connectMs - (Date.now() - started)))
  } finally {
    void client.end().catch(ignore)
  }
}

/**
 * The pg.Client class for the pools of one database (pg.Pool's `Client`
 * option): their connections share one HostRouter.
 */
export function fastChatClientClass(settings: ClientSettings): new (config: pg.ClientConfig) => FastChatClient {
  const {target, connectMs} = settings
  const router = target.routed ? new HostRouter(target.hosts, (host) => probe(settings, host)) : undefined

  return class extends pg.Client implements FastChatClient {
    /** The host this connection went to, when routed. */
    private routedTo: PgHost | undefined
    private discarded = false

    constructor(config: pg.ClientConfig) {
      // The pool's connectionTimeoutMillis bounds the wait for a pooled connection; ours bounds one attempt.
      super({...config, connectionTimeoutMillis: connectMs})
    }

    setQueryTimeout(ms: number): number {
      const parameters = (this as unknown as {connectionParameters: {query_timeout?: number | false}}).connectionParameters
      const before = Number(parameters.query_timeout || 0)
      parameters.query_timeout = ms > 0 ? ms : false
      return before
    }

    override connect(): Promise<pg.Client>
    override connect(callback: (error: Error | null, client?: pg.Client) => void): void
    override connect(callback?: (error: Error | null, client?: pg.Client) => void): Promise<pg.Client> | void {
      const opened = this.open().then(() => this)
      if (!callback) return opened
      opened.then(
        (client) => callback(null, client),
        (error: Error) => callback(error),
      )
    }

    private async open(): Promise<void> {
      // Until the pool listens: a link lost during the read-write check fails the check, not the process.
      this.on('error', ignore)
      try {
        if (!router) return void (await super.connect())
        const host = await router.pick()
        if ((this.connection as unknown as {stream: {destroyed: boolean}}).stream.destroyed) {
          throw new Error('Connection terminated due to connection timeout') // the pool gave up while we searched
        }
        this.host = host.host
        this.port = host.port
        this.routedTo = host
        const started = Date.now()
        try {
          await super.connect()
          if (!(await accepts(this, target.targetSessionAttrs, Math.max(1, connectMs - (Date.now() - started))))) throw new ReadOnlyHostError()
        } catch (error) {
          router.failed(host)
          throw error
        }
        router.worked(host)
      } catch (error) {
        this.discard()
        throw asConnectError(error)
      } finally {
        this.off('error', ignore)
      }
    }

    // Every form node-pg takes: (text|config, values?, callback?), a submittable, a promise returned.
    override query(...args: any[]): any {
      const [config, values, callback] = args as [unknown, unknown, unknown]
      const watch = (done: (...answer: unknown[]) => void) => (error: unknown, ...rest: unknown[]) => {
        if (error) this.afterError(error)
        done(error, ...rest)
      }
      if (typeof values === 'function') args[1] = watch(values as never)
      else if (typeof callback === 'function') args[2] = watch(callback as never)
      const submittable = typeof (config as {submit?: unknown} | undefined)?.submit === 'function'
      if (!submittable) {
        const result: unknown = super.query(...(args as [string]))
        if (result instanceof Promise) result.then(undefined, (error: unknown) => this.afterError(error))
        return result
      }
      return this.submit(config as Submittable, args)
    }

    /**
     * A submittable (pg-copy-streams' COPY) with our own read timeout:
     * node-pg's is cleared only through the query's callback, which such a
     * query never calls, so it would fire long after the COPY finished and
     * fail whatever the connection is doing by then.
     */
    private submit(query: Submittable, args: unknown[]): unknown {
      query.once('error', (error) => this.afterError(error))
      const timeoutMs = this.setQueryTimeout(0)
      let result: unknown
      try {
        result = super.query(...(args as [string]))
      } finally {
        this.setQueryTimeout(timeoutMs)
      }
      if (timeoutMs > 0) {
        const timer = setTimeout(() => this.discard(), timeoutMs)
        timer.unref()
        for (const event of ['end', 'finish', 'close', 'error']) query.once(event, () => clearTimeout(timer))
      }
      return result
    }

    private afterError(error: unknown): void {
      if ((error as Error).message === QUERY_READ_TIMEOUT) return this.discard()
      if ((error as {code?: unknown}).code === READ_ONLY_SQL_TRANSACTION) {
        if (router && this.routedTo) router.failed(this.routedTo)
        this.discard()
      }
    }

    /**
     * Closes the connection now (a query still on it fails). The pool drops
     * a client that is ending when it is released; ending it, rather than
     * destroying its socket, raises no 'error' event that nobody may hear.
     */
    private discard(): void {
      if (this.discarded) return
      this.discarded = true
      void this.end().catch(ignore)
    }
  }
}
