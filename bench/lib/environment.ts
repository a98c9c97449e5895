import {execFileSync} from 'node:child_process'
import {readdir, readFile, stat} from 'node:fs/promises'
import {cpus, freemem, loadavg, totalmem} from 'node:os'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'

import pg from 'pg'

import {mib, round} from './stats.js'

export const ROOT = fileURLToPath(new URL('../../', import.meta.url))

export interface MachineState {
  cpu: string
  cpus: number
  loadAverage: number[]
  /** Percent of all cores busy during one second sampled as the run starts (the load average lags by minutes). */
  busyPercentNow: number
  freeMemoryMiB: number
  totalMemoryMiB: number
  node: string
  postgres: {version: string; fsync: string; synchronousCommit: string; maxConnections: string; sharedBuffers: string} | {error: string}
  git: {commit: string; changedFiles: number} | null
  /** Source files newer than the build the cluster and CLI run (dist/), if any. */
  staleBuild: string[]
}

/** The state of the machine as the run starts: read it before trusting any figure. */
export async function machineState(databaseUrl: string | undefined): Promise<MachineState> {
  return {
    cpu: cpus()[0]?.model.trim() ?? 'unknown',
    cpus: cpus().length,
    loadAverage: loadavg().map((load) => round(load)),
    busyPercentNow: await busyPercent(1_000),
    freeMemoryMiB: mib(freemem()),
    totalMemoryMiB: mib(totalmem()),
    node: process.version,
    postgres: databaseUrl ? await postgresState(databaseUrl) : {error: 'no database access'},
    git: gitState(),
    staleBuild: await staleBuild(),
  }
}

async function busyPercent(ms: number): Promise<number> {
  const ticks = async () => {
    const fields = (await readFile('/proc/stat', 'utf8').catch(() => 'cpu 0 0 0 0')).split('\n', 1)[0]!.trim().split(/\s+/).slice(1, 9).map(Number)
    return {total: fields.reduce((a, b) => a + b, 0), idle: fields[3]! + (fields[4] ?? 0)}
  }
  const before = await ticks()
  await new Promise((resolve) => setTimeout(resolve, ms))
  const after = await ticks()
  const total = after.total - before.total
  return total > 0 ? round(((total - (after.idle - before.idle)) / total) * 100, 0) : 0
}

async function postgresState(url: string): Promise<MachineState['postgres']> {
  const client = new pg.Client({connectionString: url, connectionTimeoutMillis: 3_000})
  try {
    await client.connect()
    const show = async (setting: string) => ((await client.query(`SHOW ${setting}`)).rows[0] as Record<string, string>)[setting]!
    const version = ((await client.query('SELECT version()')).rows[0] as {version: string}).version.split(' on ')[0]!
    return {
      version,
      fsync: await show('fsync'),
      synchronousCommit: await show('synchronous_commit'),
      maxConnections: await show('max_connections'),
      sharedBuffers: await show('shared_buffers'),
    }
  } catch (error) {
    return {error: (error as Error).message}
  } finally {
    await client.end().catch(() => undefined)
  }
}

function gitState(): MachineState['git'] {
  try {
    const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], {cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore']}).trim()
    const status = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], {cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore']})
    return {commit, changedFiles: status.split('\n').filter(Boolean).length}
  } catch {
    return null
  }
}

/** The cluster and the CLI run the build in dist/; a source edited since is not what gets measured. */
async function staleBuild(): Promise<string[]> {
  const stale: string[] = []
  for (const dir of ['server', 'superserver', 'storage', 'crypto', 'commands']) {
    for (const file of await listTs(join(ROOT, dir))) {
      const built = join(ROOT, 'dist', file.slice(ROOT.length).replace(/\.ts$/, '.js'))
      const [source, output] = await Promise.all([stat(file), stat(built).catch(() => undefined)])
      if (!output || output.mtimeMs < source.mtimeMs) stale.push(file.slice(ROOT.length))
    }
  }
  return stale
}

async function listTs(dir: string): Promise<string[]> {
  const entries = await readdir(dir, {withFileTypes: true}).catch(() => [])
  const files = await Promise.all(
    entries.map((entry) => {
      const path = join(dir, entry.name)
      if (entry.isDirectory()) return listTs(path)
      return Promise.resolve(entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts') ? [path] : [])
    }),
  )
  return files.flat()
}

export function describeMachine(state: MachineState): string {
  const pgLine =
    'error' in state.postgres
      ? `PostgreSQL: ${state.postgres.error}`
      : `${state.postgres.version}; fsync=${state.postgres.fsync}, synchronous_commit=${state.postgres.synchronousCommit}, ` +
        `max_connections=${state.postgres.maxConnections}, shared_buffers=${state.postgres.sharedBuffers}`
  const lines = [
    `machine: ${state.cpus} × ${state.cpu}; load ${state.loadAverage.join(' ')}, ${state.busyPercentNow}% busy just now; memory ${state.freeMemoryMiB} MiB free of ${state.totalMemoryMiB} MiB`,
    `node ${state.node}; ${pgLine}`,
  ]
  if (state.busyPercentNow > 25) {
    lines.push(`WARNING: ${state.busyPercentNow}% of the CPU was busy before the run started: other work is running, and the figures will be lower and noisier than on a quiet machine.`)
  }
  if (state.git) lines.push(`git ${state.git.commit}${state.git.changedFiles ? ` + ${state.git.changedFiles} changed files` : ''}`)
  if (state.staleBuild.length > 0) {
    const shown = state.staleBuild.slice(0, 3).join(', ') + (state.staleBuild.length > 3 ? `, … (${state.staleBuild.length} in all)` : '')
    lines.push(`WARNING: dist/ is older than ${shown}: the cluster and the CLI run dist/, so run \`npm run build\` to measure the current code.`)
  }
  return lines.join('\n')
}
