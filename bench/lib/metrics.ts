import {readdir, readFile} from 'node:fs/promises'
import {monitorEventLoopDelay} from 'node:perf_hooks'

import {clusterAuth} from './cluster.js'
import {round} from './stats.js'

/** Prometheus text from `url`/metrics as a map of `name{labels}` → value. */
export async function scrape(baseUrl: string): Promise<Map<string, number>> {
  const response = await fetch(`${baseUrl}/metrics`, {headers: clusterAuth()})
  if (!response.ok) throw new Error(`${baseUrl}/metrics answered ${response.status}`)
  const samples = new Map<string, number>()
  for (const line of (await response.text()).split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const space = line.lastIndexOf(' ')
    samples.set(line.slice(0, space), Number(line.slice(space + 1)))
  }
  return samples
}

/** Sum of every sample of `name` whose labels contain each of `labels` (`route="/v1/x"`). */
export function sample(samples: Map<string, number>, name: string, ...labels: string[]): number {
  let sum = 0
  for (const [key, value] of samples) {
    const bare = key.indexOf('{') < 0 ? key : key.slice(0, key.indexOf('{'))
    if (bare === name && labels.every((label) => key.includes(label))) sum += value
  }
  return sum
}

const SERVER_CPU = 'fastchat_server_process_cpu_seconds_total'
const SERVER_REQUESTS = 'fastchat_server_http_requests_total'

/**
 * Requests answered so far by the chat servers together, by `METHOD route`,
 * and what their listeners answered from (`answers from memory`, `answers
 * read from PostgreSQL`, `reads (reason)`).
 */
export async function requestCounts(servers: string[]): Promise<Map<string, number>> {
  const counts = new Map<string, number>()
  const add = (name: string, value: number) => counts.set(name, (counts.get(name) ?? 0) + value)
  for (const samples of await Promise.all(servers.map((url) => scrape(url)))) {
    for (const [key, value] of samples) {
      if (key.startsWith(`${SERVER_REQUESTS}{`)) {
        const method = /method="([^"]*)"/.exec(key)?.[1] ?? '?'
        const route = /route="([^"]*)"/.exec(key)?.[1] ?? '?'
        add(`${method} ${route}`, value)
      } else if (key.startsWith('fastchat_server_listener_answers_total{')) {
        add(key.includes('source="memory"') ? 'answers from memory' : 'answers read from PostgreSQL', value)
      } else if (key.startsWith('fastchat_server_listener_reads_total{')) {
        add(`reads (${/reason="([^"]*)"/.exec(key)?.[1] ?? '?'})`, value)
      }
    }
  }
  return counts
}

/** Rates per second between two requestCounts, busiest first (`POST /v1/messages 1234.5/s`). */
export function requestRates(before: Map<string, number>, after: Map<string, number>, seconds: number): Record<string, number> {
  const rates = [...after].map(([name, count]) => [name, round((count - (before.get(name) ?? 0)) / seconds, 1)] as const)
  return Object.fromEntries(rates.filter(([, rate]) => rate > 0).sort((a, b) => b[1] - a[1]))
}
export const SERVER_RSS = 'fastchat_server_process_resident_memory_bytes'

interface CpuSnapshot {
  at: number
  servers: number[]
  machine: {busy: number; total: number}
  self: NodeJS.CpuUsage
  /** Clock ticks used so far by the PostgreSQL backends serving the bench database, by pid. */
  postgres: Map<number, number> | undefined
}

let benchDatabase: string | undefined

/** The database whose PostgreSQL backends count as "PostgreSQL" in the CPU figures. */
export function watchPostgresDatabase(name: string | undefined): void {
  benchDatabase = name
}

/** CPU used so far by each chat server (its /metrics), the whole machine (/proc/stat), PostgreSQL and this process. */
export async function cpuSnapshot(servers: string[]): Promise<CpuSnapshot> {
  const [perServer, machine, postgres] = await Promise.all([
    Promise.all(servers.map(async (url) => sample(await scrape(url), SERVER_CPU))),
    machineCpu(),
    postgresCpu(),
  ])
  return {at: performance.now(), servers: perServer, machine, self: process.cpuUsage(), postgres}
}

export interface CpuUse {
  /** Percent of one core, per chat server, in the order given. */
  serversPercent: number[]
  /** Percent of all cores of the machine (servers, Postgres, this process, anything else). */
  machinePercent: number
  /** Percent of one core used by the load generator (this process). */
  generatorPercent: number
  /**
   * Percent of one core used by the PostgreSQL backends connected to the bench
   * database (its shared WAL writer, checkpointer... not included); null when unknown.
   */
  postgresPercent: number | null
}

export function cpuBetween(before: CpuSnapshot, after: CpuSnapshot): CpuUse {
  const seconds = (after.at - before.at) / 1000
  const self = process.cpuUsage(before.self)
  const busy = after.machine.busy - before.machine.busy
  const total = after.machine.total - before.machine.total
  return {
    serversPercent: after.servers.map((cpu, i) => round(((cpu - before.servers[i]!) / seconds) * 100, 0)),
    machinePercent: total > 0 ? round((busy / total) * 100, 0) : 0,
    generatorPercent: round(((self.user + self.system) / 1e6 / seconds) * 100, 0),
    postgresPercent: postgresBetween(before.postgres, after.postgres, seconds),
  }
}

/**
 * CPU milliseconds per message: what it costs to handle `messages` in
 * `seconds`, per part (chat servers together, PostgreSQL, the load generator).
 */
export function cpuPerMessage(cpu: CpuUse, seconds: number, messages: number): CpuPerMessage {
  const ms = (percent: number) => (messages > 0 ? round(((percent / 100) * seconds * 1000) / messages, 3) : 0)
  const servers = ms(cpu.serversPercent.reduce((a, b) => a + b, 0))
  const postgres = cpu.postgresPercent === null ? null : ms(cpu.postgresPercent)
  return {servers, postgres, serversAndPostgres: postgres === null ? null : round(servers + postgres, 3), generator: ms(cpu.generatorPercent)}
}

/** CPU milliseconds per delivered message, per part. */
export interface CpuPerMessage {
  /** The chat servers together. */
  servers: number
  /** The PostgreSQL backends serving the bench database; null when unknown. */
  postgres: number | null
  /** What the system costs per message (the issue 14 target): servers + PostgreSQL. */
  serversAndPostgres: number | null
  /** The load generator, apart: not part of the system measured. */
  generator: number
}

/** The CPU figures every throughput-type row prints: the system's cost per delivered message, the generator's apart. */
export function cpuColumns(cpu: CpuUse, perMessage: CpuPerMessage): Array<string | number> {
  return [perMessage.serversAndPostgres ?? `${perMessage.servers}+?`, perMessage.servers, perMessage.postgres ?? '?', perMessage.generator, cpu.generatorPercent]
}
export const CPU_HEADERS = ['CPU ms/msg', 'servers', 'PG', 'gen ms/msg', 'gen % core']
export const CPU_NOTE =
  'CPU ms/msg: chat servers + PostgreSQL backends per delivered message (then each); gen: the load generator (this process) per message and in % of one core — near 100% means the generator, not the system, was the limit'

/** Linux's USER_HZ: /proc times are in hundredths of a second on every mainstream kernel. */
const TICKS_PER_SECOND = 100

function postgresBetween(before: Map<number, number> | undefined, after: Map<number, number> | undefined, seconds: number): number | null {
  if (!before || !after) return null
  let ticks = 0
  // A backend that exited in between is lost; the bench's pools keep theirs open.
  for (const [pid, used] of after) ticks += used - (before.get(pid) ?? 0)
  return round((ticks / TICKS_PER_SECOND / seconds) * 100, 0)
}

async function postgresCpu(): Promise<Map<number, number> | undefined> {
  if (!benchDatabase || process.platform !== 'linux') return undefined
  const used = new Map<number, number>()
  const pids = (await readdir('/proc').catch(() => [] as string[])).filter((name) => /^\d+$/.test(name))
  await Promise.all(
    pids.map(async (pid) => {
      try {
        // A backend's title: "postgres: <user> <database> <client> <state>".
        const title = await readFile(`/proc/${pid}/cmdline`, 'utf8')
        if (!title.startsWith('postgres: ') || !title.split(' ').includes(benchDatabase!)) return
        const stat = await readFile(`/proc/${pid}/stat`, 'utf8')
        const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
        // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the command name.
        used.set(Number(pid), Number(fields[11]) + Number(fields[12]))
      } catch {
        // Gone in between.
      }
    }),
  )
  return used
}

async function machineCpu(): Promise<{busy: number; total: number}> {
  try {
    const first = (await readFile('/proc/stat', 'utf8')).split('\n', 1)[0]!
    const ticks = first.trim().split(/\s+/).slice(1).map(Number)
    const total = ticks.slice(0, 8).reduce((a, b) => a + b, 0)
    const idle = ticks[3]! + (ticks[4] ?? 0)
    return {busy: total - idle, total}
  } catch {
    return {busy: 0, total: 0}
  }
}

/** The load generator's own event-loop delay while a measurement runs: high values mean it, not the server, added latency. */
export function loopDelay(): {stop(): {p50: number; p99: number; max: number}} {
  const histogram = monitorEventLoopDelay({resolution: 10})
  histogram.enable()
  return {
    stop() {
      histogram.disable()
      const ms = (ns: number) => round(ns / 1e6, 1)
      return {p50: ms(histogram.percentile(50)), p99: ms(histogram.percentile(99)), max: ms(histogram.max)}
    },
  }
}
