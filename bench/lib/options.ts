/** Command line of `npm run bench`. */

export const SCENARIOS = ['throughput', 'latency', 'idle-polls', 'group-fanout', 'crypto', 'cli', 'cross-server'] as const
export type ScenarioName = (typeof SCENARIOS)[number]

export interface BenchOptions {
  /** Every scenario scaled down (CI smoke check); figures only, no thresholds. */
  quick: boolean
  scenarios: ScenarioName[]
  /** Use this running cluster instead of starting one. */
  superserver?: string
  /** With --superserver: the cluster's database, to seed users directly. */
  databaseUrl?: string
  jsonDir: string
}

export const USAGE = `Usage: npm run bench -- [--quick] [--only ${SCENARIOS.join(',')}] [--superserver URL [--database-url URL]] [--json-dir DIR]

  --quick             every scenario scaled down (well under 2 minutes); prints figures, asserts nothing
  --only a,b          run only these scenarios
  --superserver URL   use a running cluster instead of starting one on a fresh database
                      (scenarios that need special server settings are skipped)
  --database-url URL  with --superserver: that cluster's database, to seed users with SQL
                      (default: the database of a \`fastchat up\` running here with that superserver)
  --json-dir DIR      where to write the JSON results (default bench/results)

Environment: DATABASE_URL, the PostgreSQL server on which a fresh database is
created for the run (default postgres://postgres@127.0.0.1:5432/postgres).`

export function parseOptions(argv: string[]): BenchOptions {
  const options: BenchOptions = {quick: false, scenarios: [...SCENARIOS], jsonDir: 'bench/results'}
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
