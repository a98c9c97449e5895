import type {Logger} from 'pino'
import type {DataSource} from 'typeorm'

export type DatabaseState = {ok: true} | {ok: false; reason: string}

export interface DatabaseHealthOptions {
  /** A check that takes longer than this counts as a failure. */
  timeoutMs: number
  /** A result is reused for this long: /healthz and heartbeats cost one query per period, however often they ask. */
  cacheMs: number
}

/**
 * "Healthy means can serve" (DESIGN.md section 2): whether this server's
 * database answers a `SELECT 1` through the same pool every route uses,
 * within `timeoutMs`. So an exhausted pool counts as unusable as much as an
 * unreachable database. At most one check runs at a time.
 */
export class DatabaseHealth {
  private last: {at: number; state: DatabaseState} | undefined
  private running: Promise<DatabaseState> | undefined

  constructor(
    private readonly db: DataSource,
    private readonly options: DatabaseHealthOptions,
    private readonly logger?: Logger,
  ) {}

  /**
   * A result no older than `maxAgeMs` (default `cacheMs`), checking now if
   * needed, so at most `timeoutMs` away. Concurrent callers share one check.
   */
  check(maxAgeMs = this.options.cacheMs): Promise<DatabaseState> {
    if (this.last && Date.now() - this.last.at < maxAgeMs) return Promise.resolve(this.last.state)
    this.running ??= this.probe().then((state) => {
      if (!state.ok && (this.last?.state.ok ?? true)) this.logger?.warn({reason: state.reason}, 'database unusable')
      if (state.ok && this.last && !this.last.state.ok) this.logger?.info('database usable again')
      this.last = {at: Date.now(), state}
      this.running = undefined
      return state
    })
    return this.running
  }

  private async probe(): Promise<DatabaseState> {
    let timer: NodeJS.Timeout | undefined
    const timedOut = new Promise<DatabaseState>((resolve) => {
      timer = setTimeout(() => resolve({ok: false, reason: `the database did not answer within ${this.options.timeoutMs} ms`}), this.options.timeoutMs)
    })
    // A query still waiting after the timeout settles later, unobserved.
    const answered = this.db.query('SELECT 1').then(
      (): DatabaseState => ({ok: true}),
      (error: unknown): DatabaseState => {
        this.logger?.debug({err: error}, 'database check failed')
        // The code only (ECONNREFUSED, 57P01, ...): a message could name hosts, and /healthz is public.
        const code = (error as {code?: unknown}).code
        return {ok: false, reason: `the database check failed${typeof code === 'string' ? ` (${code})` : ''}`}
      },
    )
    try {
      return await Promise.race([answered, timedOut])
    } finally {
      clearTimeout(timer)
    }
  }
}
