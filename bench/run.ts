/**
 * `npm run bench`: starts a cluster (a superserver and two chat servers, as
 * child processes) on a fresh database on the real PostgreSQL, or uses the
 * one given with --superserver, and runs the named scenarios, each printing
 * a table; the figures go to bench/results/<ISO time>.json. What each scenario
 * measures and how: docs/benchmarks.md.
 *
 *   npm run bench -- [--quick] [--only a,b] [--superserver URL] [--json-dir DIR]
 */
import {randomUUID} from 'node:crypto'
import {mkdir, writeFile} from 'node:fs/promises'
import {loadavg} from 'node:os'
import {join, relative, resolve} from 'node:path'
import {performance} from 'node:perf_hooks'

import {encryptText, sealReceipt} from '../crypto/index.js'
import {readLocalCluster} from '../superserver/local-cluster.js'
import {loadFixtureKey} from '../test/helpers/keys.js'
import {createBenchDatabase, DEFAULT_ADMIN_URL, existingCluster, redact, startCluster, type Target} from './lib/cluster.js'
import {describeMachine, machineState, ROOT} from './lib/environment.js'
import {watchPostgresDatabase} from './lib/metrics.js'
import {parseOptions, USAGE, UsageError, type BenchOptions, type ScenarioName} from './lib/options.js'
import type {ClusterOptions, Scenario, ScenarioContext, ScenarioResult} from './lib/scenario.js'
import {round} from './lib/stats.js'
import {targetRows, targetsTable} from './lib/targets.js'
import {ApiUsers, SqlUsers, type UserSource} from './lib/users.js'
import {cli} from './scenarios/cli.js'
import {balancing} from './scenarios/balancing.js'
import {crossServer} from './scenarios/cross-server.js'
import {crypto} from './scenarios/crypto.js'
import {fixedLoad} from './scenarios/fixed-load.js'
import {groupFanout} from './scenarios/group-fanout.js'
import {idlePolls} from './scenarios/idle-polls.js'
import {peer} from './scenarios/peer.js'
import {receipts, throughput} from './scenarios/throughput.js'

const SCENARIO_TABLE: Record<ScenarioName, {title: string; run: Scenario}> = {
  throughput: {title: '1. throughput: closed loop of 1:1 sends on 2 chat servers (long-poll and stream)', run: throughput},
  latency: {title: '2. latency at fixed load (open loop, 2 chat servers, long-poll and stream)', run: fixedLoad},
  'idle-polls': {title: '3. idle long-polls and idle streams on one chat server', run: idlePolls},
  'group-fanout': {title: '4. group fan-out: one message, every member long-polling', run: groupFanout},
  crypto: {title: '5. client-side crypto per message', run: crypto},
  cli: {title: '6. CLI cold start', run: cli},
  'cross-server': {title: '7. cross-server latency at light load (3 chat servers, long-poll and stream)', run: crossServer},
  balancing: {title: '8. balancing: round-robin and least-loaded after a chat server restarts', run: balancing},
  receipts: {title: '9. receipts: the closed loop of 1 with delivered and read receipts off, then on', run: receipts},
  peer: {title: '10. the direct path: send→receive latency between two clients, server path against direct path', run: peer},
}

/** Tables and progress go to stdout; problems to stderr. */
/** Distinct read receipts the receipts scenario draws from: a dozen in one event rarely share one. */
const RECEIPT_CIPHERTEXTS = 256

const log = (line: string) => process.stdout.write(`${line}\n`)

async function main(): Promise<number> {
  let options: BenchOptions
  try {
    options = parseOptions(process.argv.slice(2))
  } catch (error) {
    if (!(error instanceof UsageError)) throw error
    if (error.message) console.error(`bench: ${error.message}\n`)
    console.error(USAGE)
    return error.message ? 1 : 0
  }
  const started = performance.now()
  const startedAt = new Date()
  const needsCluster = options.scenarios.some((name) => name !== 'crypto')

  // --- where the data lives ---
  const adminUrl = options.superserver ? undefined : process.env.DATABASE_URL || DEFAULT_ADMIN_URL
  let clusterDatabaseUrl = options.databaseUrl
  if (options.superserver && !clusterDatabaseUrl) {
    const local = await readLocalCluster()
    if (local && local.superserverUrl.replace(/\/+$/, '') === options.superserver) {
      clusterDatabaseUrl = local.databaseUrl
      // Its registry and metrics answer its secret only.
      process.env.FASTCHAT_CLUSTER_SECRET ||= local.clusterSecret
    }
  }

  const machine = await machineState(adminUrl ?? clusterDatabaseUrl)
  log(`FastChat benchmark${options.quick ? ' (--quick)' : ''}: ${options.scenarios.join(', ')}  [${startedAt.toISOString()}]`)
  log(describeMachine(machine))

  const cleanups: Array<() => Promise<unknown>> = []
  let cleaning: Promise<void> | undefined
  const cleanUp = () =>
    (cleaning ??= (async () => {
      for (const step of cleanups.reverse()) await step().catch((error: Error) => console.error(`bench: cleaning up: ${error.message}`))
    })())
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      console.error(`\nbench: ${signal}: stopping the cluster and dropping the database...`)
      void cleanUp().finally(() => process.exit(130))
    })
  }

  const results: ScenarioResult[] = []
  let clusterInfo: Record<string, unknown> = {}
  try {
    const [alice, bob] = await Promise.all([loadFixtureKey('alice'), loadFixtureKey('bob')])
    const ciphertext = await encryptText({text: 'Are we still on for Thursday? I can bring the projector.', to: [bob.publicKey, alice.publicKey], signer: alice.unlocked})
    // Read receipts as the client makes them (client/receipts.ts): bob's, for one message of alice's, sealed to her.
    // Each is its own ciphertext, as every real one is: a receipt event holds a dozen, and PostgreSQL compresses
    // a dozen copies of one ciphertext to a twelfth (real ones do not compress), so one for all flattered "on".
    const receiptCiphertexts: string[] = []
    for (let i = 0; i < RECEIPT_CIPHERTEXTS; i++) {
      const receiptText = JSON.stringify({v: 1, type: 'read', to: 'alice', messages: [randomUUID()], conversation: {user: 'bob'}})
      receiptCiphertexts.push(await sealReceipt({text: receiptText, reader: bob.unlocked, to: alice.publicKey}))
    }

    let database: Awaited<ReturnType<typeof createBenchDatabase>> | undefined
    if (needsCluster && adminUrl) {
      database = await createBenchDatabase(adminUrl)
      cleanups.push(() => database!.drop())
      log(`database: ${database.name} on ${redact(adminUrl)} (dropped at the end)`)
      clusterDatabaseUrl = database.url
    }
    if (clusterDatabaseUrl) watchPostgresDatabase(new URL(clusterDatabaseUrl).pathname.slice(1))

    let main: Promise<Target> | undefined
    const running = new Set<Target>()
    cleanups.push(() => Promise.all([...running].map((target) => target.stop())))
    const launch = async (servers: number, env: Record<string, string>, options: ClusterOptions = {}): Promise<Target> => {
      const t0 = performance.now()
      const {strategy} = options
      const target = await startCluster({databaseUrl: database!.url, servers, env, ...options, log})
      running.add(target)
      const stop = target.stop
      target.stop = () => {
        running.delete(target)
        return stop()
      }
      const settings = [...Object.entries(env).map(([k, v]) => `${k}=${v}`), ...(strategy ? [`--strategy ${strategy}`] : [])]
      log(`  (cluster of ${servers} chat servers${settings.length ? ` with ${settings.join(' ')}` : ''} up in ${round((performance.now() - t0) / 1000, 1)} s)`)
      return target
    }
    const target = () =>
      (main ??= (options.superserver ? existingCluster(options.superserver) : launch(2, {})).then((t) => {
        clusterInfo = {superserver: t.superserverUrl, servers: t.serverUrls, own: t.own}
        return t
      }))
    let users: Promise<UserSource> | undefined
    const context: ScenarioContext = {
      options,
      target,
      freshTarget: async () => {
        if (!options.superserver && main) {
          await (await main).stop()
          main = undefined
        }
        return target()
      },
      startCluster: options.superserver
        ? undefined
        : async (servers, env, options) => {
            // The run's main cluster would compete for the same two cores.
            if (main) await (await main).stop()
            main = undefined
            return launch(servers, env, options)
          },
      users: () =>
        (users ??= (async () => {
          const source = clusterDatabaseUrl ? await SqlUsers.connect(clusterDatabaseUrl, bob) : new ApiUsers((await target()).serverUrls, bob)
          // Closed before the database is dropped (cleanups run in reverse).
          cleanups.push(() => source.close())
          return source
        })()),
      fixtures: {alice, bob},
      ciphertext,
      receiptCiphertexts,
      log,
    }

    for (const name of options.scenarios) {
      const {title, run} = SCENARIO_TABLE[name]
      log(`\n== ${title} ==`)
      const t0 = performance.now()
      const result: ScenarioResult = {name, title, text: '', seconds: 0, loadAverage: 0}
      try {
        const output = await run(context)
        if ('skipped' in output) result.skipped = output.skipped
        else Object.assign(result, output)
      } catch (error) {
        result.error = (error as Error).stack ?? String(error)
      }
      result.seconds = round((performance.now() - t0) / 1000, 1)
      result.loadAverage = round(loadavg()[0]!)
      if (result.skipped) log(`skipped: ${result.skipped}`)
      else if (result.error) log(`FAILED: ${result.error}`)
      else log(result.text)
      log(`(${result.seconds} s; load average ${result.loadAverage})`)
      results.push(result)
    }
  } finally {
    await cleanUp()
  }

  const targets = targetRows(results, options.quick)
  log(`\n== issue 14 targets ==\n${targetsTable(targets, options.quick)}`)
  const totalSeconds = round((performance.now() - started) / 1000, 1)
  const dir = resolve(ROOT, options.jsonDir)
  await mkdir(dir, {recursive: true})
  const file = join(dir, `${startedAt.toISOString().replace(/:/g, '-')}.json`)
  const report = {startedAt: startedAt.toISOString(), quick: options.quick, totalSeconds, machine, cluster: clusterInfo, modes: options.modes, targets, scenarios: results}
  await writeFile(file, `${JSON.stringify(report, null, 2)}\n`)
  const failed = results.filter((r) => r.error).map((r) => r.name)
  const skipped = results.filter((r) => r.skipped).map((r) => r.name)
  log(
    `\nbench finished in ${totalSeconds} s: ${results.length - failed.length - skipped.length} ran` +
      `${skipped.length ? `, skipped ${skipped.join(', ')}` : ''}${failed.length ? `, FAILED ${failed.join(', ')}` : ''}; wrote ${relative(process.cwd(), file) || file}`,
  )
  return failed.length > 0 ? 1 : 0
}

main().then(
  (code) => process.exit(code),
  (error: Error) => {
    console.error(`bench: ${error.message}`)
    process.exit(1)
  },
)
