/** Command line of `npm run bench`. */

export const SCENARIOS = ['throughput', 'latency', 'idle-polls', 'group-fanout', 'crypto', 'cli', 'cross-server', 'balancing', 'receipts', 'peer'] as const
export type ScenarioName = (typeof SCENARIOS)[number]

/** How the load generator's receivers take their events: long-poll loops, or one event stream (SSE) per user. */
export const RECEIVE_MODES = ['poll', 'stream'] as const
export type ReceiveMode = (typeof RECEIVE_MODES)[number]

export interface BenchOptions {
  /** Every scenario scaled down (CI smoke check); figures only, no thresholds. */
  quick: boolean
  scenarios: ScenarioName[]
  /** Use this running cluster instead of starting one. */
  superserver?: string
  /** With --superserver: the cluster's database, to seed users directly. */
  databaseUrl?: string
  jsonDir: string
  /** The receive modes the throughput, latency, idle-polls and cross-server scenarios run in, in this order. */
  modes: ReceiveMode[]
}

export const USAGE = `Usage: npm run bench -- [--quick] [--only ${SCENARIOS.join(',')}] [--mode poll|stream|both] [--superserver URL [--database-url URL]] [--json-dir DIR]

  --quick             every scenario scaled down (about 2 minutes); prints figures, asserts nothing
  --only a,b          run only these scenarios
  --mode M            receivers long-poll (poll), follow an event stream (stream), or each scenario
                      that receives runs once per mode (both, the default)
  --superserver URL   use a running cluster instead of starting one on a fresh database
                      (scenarios that need special server settings are skipped)
  --database-url URL  with --superserver: that cluster's database, to seed users with SQL
                      (default: the database of a \`fastchat up\` running here with that superserver)
  --json-dir DIR      where to write the JSON results (default bench/results)

Environment: DATABASE_URL, the PostgreSQL server on which a fresh database is
created for the run (default postgres://postgres@127.0.0.1:5432/postgres).`

export function parseOptions(argv: string[]): BenchOptions {
  const options: BenchOptions = {quick: false, scenarios: [...SCENARIOS], jsonDir: 'bench/results', modes: [...RECEIVE_MODES]}
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    const eq = arg.indexOf('=')
    const [flag, inline] = arg.startsWith('--') && eq > 0 ? [arg.slice(0, eq), arg.slice(eq + 1)] : [arg, undefined]
    const value = (): string => {
      const next = inline ?? argv[++i]
      if (next === undefined || next === '') throw new UsageError(`${flag} needs a value`)
      return next
    }
    switch (flag) {
      case '--quick':
        options.quick = true
        break
      case '--only': {
        const names = value().split(',').map((name) => name.trim()).filter(Boolean)
        const unknown = names.filter((name) => !(SCENARIOS as readonly string[]).includes(name))
        if (unknown.length > 0) throw new UsageError(`unknown scenario ${unknown.join(', ')} (known: ${SCENARIOS.join(', ')})`)
        options.scenarios = SCENARIOS.filter((name) => names.includes(name))
        break
      }
      case '--superserver':
        options.superserver = value().replace(/\/+$/, '')
        break
      case '--database-url':
        options.databaseUrl = value()
        break
      case '--json-dir':
        options.jsonDir = value()
        break
      case '--mode': {
        const mode = value()
        if (mode === 'both') options.modes = [...RECEIVE_MODES]
        else if ((RECEIVE_MODES as readonly string[]).includes(mode)) options.modes = [mode as ReceiveMode]
        else throw new UsageError(`--mode is poll, stream or both (got ${mode})`)
        break
      }
      case '--help':
      case '-h':
        throw new UsageError('')
      default:
        throw new UsageError(`unknown argument ${arg}`)
    }
  }
  if (options.databaseUrl && !options.superserver) throw new UsageError('--database-url only goes with --superserver')
  return options
}

export class UsageError extends Error {}
