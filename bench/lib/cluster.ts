import {randomBytes} from 'node:crypto'
import {mkdtemp, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {performance} from 'node:perf_hooks'

import {canConnect, dropDatabase, ensureDatabase} from '../../storage/admin.js'
import {startLocalCluster} from '../../superserver/local-cluster.js'
import {ROOT} from './environment.js'

/** A running cluster the scenarios talk to. */
export interface Target {
  superserverUrl: string
  serverUrls: string[]
  /** Started by this run (so its servers' settings are ours to choose). */
  own: boolean
  /**
   * Only on a cluster this run started: stops chat server `index` with SIGTERM
   * (it drains); the cluster starts it again a second later, empty, on a new
   * free port. Resolves to its new URL (also put in serverUrls) once the
   * superserver lists it healthy.
   */
  restartServer?(index: number): Promise<string>
  stop(): Promise<void>
}

export const DEFAULT_ADMIN_URL = 'postgres://postgres@127.0.0.1:5432/postgres'
const CLI_ENTRY = join(ROOT, 'bin', 'run.js')
/** Child log lines shown per cluster; more are counted, not printed (a flood of warnings under load helps no one). */
const LOG_LINES_SHOWN = 20

/**
 * GET /v1/servers and /metrics answer only the cluster secret: FASTCHAT_CLUSTER_SECRET
 * (made up for the clusters this run starts; for an existing one, its own).
 */
export function clusterAuth(): Record<string, string> {
  const secret = process.env.FASTCHAT_CLUSTER_SECRET
  return secret ? {authorization: `Bearer ${secret}`} : {}
}

/** A database of its own for this run, on the PostgreSQL server at `adminUrl`. */
export async function createBenchDatabase(adminUrl: string): Promise<{url: string; name: string; drop(): Promise<void>}> {
  if (!(await canConnect(adminUrl))) {
    throw new Error(
      `PostgreSQL is not reachable at ${redact(adminUrl)}. Start it with \`pg_ctlcluster --skip-systemctl-redirect 15 main start\` ` +
        '(or point DATABASE_URL at a PostgreSQL server where a database may be created).',
    )
  }
  const name = `fastchat_bench_${new Date().toISOString().replace(/\D/g, '').slice(0, 14)}`
  const url = await ensureDatabase(adminUrl, name)
  let dropped = false
  return {
    url,
    name,
    async drop() {
      if (dropped) return
      dropped = true
      await dropDatabase(adminUrl, name)
    },
  }
}

/**
 * `servers` chat servers and a superserver as child processes (the built CLI,
 * as `fastchat up` runs them), on `databaseUrl`, with `env` added to their
 * environment.
 */
export async function startCluster(options: {
  databaseUrl: string
  servers: number
  env?: Record<string, string>
  /** The superserver's --strategy (round-robin when not given). */
  strategy?: string
  /** The children's LOG_LEVEL (default warn). */
  logLevel?: string
  log: (line: string) => void
}): Promise<Target> {
  const dataDir = await mkdtemp(join(tmpdir(), 'fastchat-bench-'))
  let shown = 0
  let hidden = 0
  // startLocalCluster hands its children this process's environment.
  // Rate limits (per account and per IP, and everything here comes from 127.0.0.1) would cap the load at a few hundred sends/s.
  const env = {FASTCHAT_RATE_LIMITS: 'off', ...options.env}
  // Kept after start-up (not restored below): the scenarios read the cluster's metrics with it.
  process.env.FASTCHAT_CLUSTER_SECRET ||= randomBytes(24).toString('base64url')
  const saved = new Map(Object.keys(env).map((key) => [key, process.env[key]]))
  Object.assign(process.env, env)
  try {
    const cluster = await startLocalCluster({
      servers: options.servers,
      port: 0,
      dataDir,
      databaseUrl: options.databaseUrl,
      // FASTCHAT_BENCH_NODE_FLAGS="--cpu-prof --cpu-prof-dir=/tmp/prof" profiles every cluster process (docs/benchmarks.md).
      entry: [...(process.env.FASTCHAT_BENCH_NODE_FLAGS?.split(/\s+/).filter(Boolean) ?? []), CLI_ENTRY],
      logLevel: options.logLevel ?? 'warn',
      strategy: options.strategy,
      log: (line) => {
        if (shown++ < LOG_LINES_SHOWN) options.log(`  ${line}`)
        else hidden++
      },
    })
    let stopping: Promise<void> | undefined
    const target: Target = {
      superserverUrl: cluster.superserverUrl,
      serverUrls: [...cluster.serverUrls],
      own: true,
      async restartServer(index) {
        const old = target.serverUrls[index]!
        const pid = cluster.serverPids()[index]
        if (pid === undefined) throw new Error(`chat server ${index + 1} is not running`)
        process.kill(pid, 'SIGTERM')
        const deadline = performance.now() + 60_000
        while (performance.now() < deadline) {
          const healthy = [...(await registryView(cluster.superserverUrl).catch(() => new Map<string, RegisteredServer>())).values()].filter((s) => s.healthy).map((s) => s.url)
          const fresh = healthy.find((url) => url !== old && !target.serverUrls.includes(url))
          if (fresh && healthy.length >= options.servers) {
            target.serverUrls[index] = fresh
            return fresh
          }
          await new Promise((resolve) => setTimeout(resolve, 100))
        }
        throw new Error(`chat server ${index + 1} did not come back within 60 s`)
      },
      stop() {
        stopping ??= (async () => {
          await cluster.stop()
          await rm(dataDir, {recursive: true, force: true})
          if (hidden > 0) options.log(`  (${hidden} more log lines from the cluster not shown)`)
        })()
        return stopping
      },
    }
    return target
  } catch (error) {
    await rm(dataDir, {recursive: true, force: true})
    throw error
  } finally {
    for (const [key, value] of saved) {
      if (value === undefined) delete process.env[key]
      else process.env[key] = value
    }
  }
}

/** A cluster someone else runs: its healthy chat servers, as the superserver lists them. */
export async function existingCluster(superserverUrl: string): Promise<Target> {
  const response = await fetch(`${superserverUrl}/v1/servers`, {headers: clusterAuth()}).catch((error: Error) => {
    throw new Error(`cannot reach the superserver at ${superserverUrl}: ${error.message}`)
  })
  if (!response.ok) {
    const hint = response.status === 401 ? ' (set FASTCHAT_CLUSTER_SECRET to the cluster\'s secret)' : ''
    throw new Error(`${superserverUrl}/v1/servers answered ${response.status}${hint}`)
  }
  const {servers} = (await response.json()) as {servers: {url: string; healthy: boolean}[]}
  const serverUrls = servers.filter((server) => server.healthy).map((server) => server.url)
  if (serverUrls.length === 0) throw new Error(`the superserver at ${superserverUrl} has no healthy chat server`)
  return {superserverUrl, serverUrls, own: false, stop: async () => undefined}
}

/** Open polls per chat server as the superserver last heard them (heartbeats, every ~2 s). */
export async function openPolls(superserverUrl: string): Promise<Map<string, number>> {
  return new Map([...(await registryView(superserverUrl))].map(([url, server]) => [url, server.openPolls]))
}

export interface RegisteredServer {
  url: string
  healthy: boolean
  openPolls: number
  /** 0 from a server that does not report streams. */
  openStreams: number
  assignedSinceBeat: number
}

/** The superserver's view of its healthy and unhealthy chat servers, by URL (heartbeats, every ~2 s). */
export async function registryView(superserverUrl: string): Promise<Map<string, RegisteredServer>> {
  const response = await fetch(`${superserverUrl}/v1/servers`, {headers: clusterAuth()})
  if (!response.ok) throw new Error(`${superserverUrl}/v1/servers answered ${response.status}`)
  const {servers} = (await response.json()) as {servers: Array<Partial<RegisteredServer> & {url: string; healthy: boolean}>}
  return new Map(
    servers.map((server) => [
      server.url,
      {url: server.url, healthy: server.healthy, openPolls: server.openPolls ?? 0, openStreams: server.openStreams ?? 0, assignedSinceBeat: server.assignedSinceBeat ?? 0},
    ]),
  )
}

export function redact(url: string): string {
  try {
    const parsed = new URL(url)
    if (parsed.password) parsed.password = '***'
    return parsed.toString()
  } catch {
    return '(unparsable URL)'
  }
}
