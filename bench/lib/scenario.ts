import type {FixtureKey} from '../../test/helpers/keys.js'
import type {Target} from './cluster.js'
import type {BenchUser} from './http.js'
import type {BenchOptions, ScenarioName} from './options.js'
import type {SeededUser, UserSource} from './users.js'

/** What every scenario gets from the runner. */
export interface ScenarioContext {
  options: BenchOptions
  /** The cluster of the run (two chat servers when the run starts its own). */
  target(): Promise<Target>
  /** The same, freshly started (the main cluster is restarted) when the run owns it: for figures that history would skew, like memory. */
  freshTarget(): Promise<Target>
  /**
   * Starts a separate cluster with `servers` chat servers and `env` in their
   * environment, stopping the run's main cluster first; undefined with
   * --superserver (the run does not control the servers).
   */
  startCluster: ((servers: number, env: Record<string, string>, options?: ClusterOptions) => Promise<Target>) | undefined
  users(): Promise<UserSource>
  fixtures: {alice: FixtureKey; bob: FixtureKey}
  /** Real OpenPGP output (alice to bob and herself, signed), made once: the ciphertext of every 1:1 message. */
  ciphertext: string
  /** Read receipts as the client makes them (sealed to the sender, one message id), each its own ciphertext: what the receipts scenario posts. */
  receiptCiphertexts: string[]
  log(line: string): void
}

export interface ClusterOptions {
  /** The superserver's --strategy. */
  strategy?: string
  /** The children's LOG_LEVEL (default warn). */
  logLevel?: string
}

export interface ScenarioResult {
  name: ScenarioName
  title: string
  /** Set when the scenario did not run, with the reason. */
  skipped?: string
  /** Set when it failed. */
  error?: string
  /** Printed: a compact table and its notes. */
  text: string
  data?: unknown
  seconds: number
  /** 1-minute load average when it ended: high means other work ran alongside. */
  loadAverage: number
}

export type ScenarioOutput = Pick<ScenarioResult, 'text' | 'data'> | {skipped: string}

export type Scenario = (context: ScenarioContext) => Promise<ScenarioOutput>

const labelsUsed = new Map<string, number>()

/** Seeded users given servers round-robin, cursors at 0. Each call makes new users, whatever the label. */
export async function usersOn(context: ScenarioContext, label: string, count: number, servers: string[]): Promise<BenchUser[]> {
  const source = await context.users()
  const used = labelsUsed.get(label) ?? 0
  labelsUsed.set(label, used + 1)
  const seeded: SeededUser[] = await source.seed(used === 0 ? label : `${label}${used}`, count)
  return seeded.map((user, i) => ({...user, server: servers[i % servers.length]!, cursor: 0}))
}

/** The reason a scenario needing `count` users cannot run, if it cannot. */
export async function tooManyUsers(context: ScenarioContext, count: number): Promise<string | undefined> {
  const source = await context.users()
  if (count <= source.limit) return undefined
  return `needs ${count} users, but users are ${source.how} (at most ${source.limit}); pass --database-url to seed them with SQL`
}
