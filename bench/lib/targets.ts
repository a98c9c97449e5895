import type {ScenarioResult} from './scenario.js'
import {median, mib, round, table} from './stats.js'

/**
 * The targets of issue 14 (docs/benchmarks.md, "Targets"), one row each, with
 * the figure this run measured for it, read from the scenarios' data. A
 * scenario that did not run leaves its rows at "-"; --quick figures come from
 * scaled-down scenarios, so no row is marked met or not then.
 */
export interface TargetRow {
  figure: string
  target: string
  measured: string
  /** Undefined when not measured (or --quick). */
  met?: boolean
}

/* The scenarios' data, as far as the targets read it (see each scenario's return value). */
interface Latency {
  p99: number
  max: number
}
interface ThroughputData {
  users: number
  modes: Array<{mode: string; deliveredPerSecond: number; latencyMs: Latency; cpuMsPerMessage: {serversAndPostgres: number | null}}>
}
interface FixedLoadData {
  modes: Array<{mode: string; steps: Array<{targetRate: number; sustained: boolean; deliveredPerSecond: number; latencyMs: Latency}>}>
}
interface IdleData {
  modes: Array<{mode: string; polls?: number; streams?: number; rssWithOpenBytes: number; broadcast: {latencyMs: Latency; missing: number}}>
}
interface FanoutData {
  sizes: Array<{members: number; runs: Array<{lastMs: number}>}>
}
interface CrossServerData {
  modes: Array<{mode: string; receive: string; rate: number; latencyMs: Latency; env: Record<string, string>}>
}
interface BalancingData {
  strategies: Array<{strategy: string; mode: string; spread: {afterNewClients: number[]}; largerSharePercent: number; latencyMs: Latency}>
}

const n = (value: number) => value.toLocaleString('en-US', {maximumFractionDigits: 0})
const ms = (value: number) => `${round(value, value < 10 ? 1 : 0)} ms`

export function targetRows(results: ScenarioResult[], quick: boolean): TargetRow[] {
  const data = <T>(name: string): T | undefined => results.find((r) => r.name === name && r.data !== undefined)?.data as T | undefined
  const rows: TargetRow[] = []
  const add = (figure: string, target: string, measured: string | undefined, met: boolean | undefined) =>
    rows.push({figure, target, measured: measured ?? '-', ...(measured === undefined || quick || met === undefined ? {} : {met})})

  const tp = data<ThroughputData>('throughput')
  for (const [mode, rate, p99] of [['poll', 4_000, 50], ['stream', 6_000, 30]] as const) {
    const row = tp?.modes.find((m) => m.mode === mode)
    add(
      `closed loop, ${tp?.users ?? 100} users, ${mode === 'poll' ? 'long-poll' : 'stream'}: delivered msg/s`,
      `≥ ${n(rate)}, p99 < ${p99} ms`,
      row && `${n(row.deliveredPerSecond)} msg/s, p99 ${ms(row.latencyMs.p99)}`,
      row && row.deliveredPerSecond >= rate && row.latencyMs.p99 < p99,
    )
  }
  for (const [mode, limit] of [['stream', 0.3], ['poll', 0.4]] as const) {
    const row = tp?.modes.find((m) => m.mode === mode && m.deliveredPerSecond > 0)
    const cpu = row?.cpuMsPerMessage.serversAndPostgres
    add(`CPU per delivered message, chat servers + PostgreSQL (${mode === 'poll' ? 'long-poll' : 'stream'})`, `≤ ${limit} ms`, cpu == null ? undefined : `${cpu} ms`, cpu == null ? undefined : cpu <= limit)
  }

  const fl = data<FixedLoadData>('latency')
  const step = (mode: string, rate: number) => fl?.modes.find((m) => m.mode === mode)?.steps.find((s) => s.targetRate === rate)
  for (const mode of ['poll', 'stream']) {
    const s = step(mode, 500)
    add(`500 msg/s offered (${mode}): p99`, '≤ 5 ms', s && `p99 ${ms(s.latencyMs.p99)}${s.sustained ? '' : ' (not sustained)'}`, s && s.sustained && s.latencyMs.p99 <= 5)
  }
  for (const mode of ['poll', 'stream']) {
    const s = step(mode, 2_000)
    add(
      `2,000 msg/s offered (${mode})`,
      'sustained, p99 < 20 ms',
      s && `${s.sustained ? 'sustained' : `not sustained (${n(s.deliveredPerSecond)} delivered/s)`}, p99 ${ms(s.latencyMs.p99)}`,
      s && s.sustained && s.latencyMs.p99 < 20,
    )
  }

  const idle = data<IdleData>('idle-polls')
  for (const mode of ['poll', 'stream']) {
    const row = idle?.modes.find((m) => m.mode === mode)
    const count = row?.polls ?? row?.streams ?? 10_000
    add(`${n(count)} idle ${mode === 'poll' ? 'polls' : 'streams'} on one server: resident memory`, '< 150 MiB', row && `${mib(row.rssWithOpenBytes)} MiB`, row && mib(row.rssWithOpenBytes) < 150)
  }
  for (const mode of ['poll', 'stream']) {
    const row = idle?.modes.find((m) => m.mode === mode)
    const count = row?.polls ?? row?.streams ?? 10_000
    add(
      `${n(count)} parked ${mode === 'poll' ? 'polls' : 'streams'} woken by one broadcast: last`,
      mode === 'poll' ? '< 0.5 s' : '(no target)',
      row && `${round(row.broadcast.latencyMs.max / 1000, 2)} s${row.broadcast.missing ? `, ${row.broadcast.missing} missing` : ''}`,
      mode === 'poll' ? row && row.broadcast.latencyMs.max < 500 && row.broadcast.missing === 0 : undefined,
    )
  }

  const fanout = data<FanoutData>('group-fanout')
  const biggest = fanout?.sizes.reduce<FanoutData['sizes'][number] | undefined>((a, b) => (a && a.members >= b.members ? a : b), undefined)
  const last = biggest && median(biggest.runs.map((r) => r.lastMs))
  add(`group of ${n(biggest?.members ?? 1_000)}: last member (median)`, '< 100 ms', last === undefined ? undefined : ms(last), last === undefined ? undefined : last < 100)

  const xs = data<CrossServerData>('cross-server')
  for (const mode of ['poll', 'stream']) {
    const row = xs?.modes.find((m) => Object.keys(m.env).length === 0 && m.receive === mode)
    add(`cross-server p99 at ${row?.rate ?? 50} msg/s (${mode}, default wake-up path)`, '< 10 ms', row && `p99 ${ms(row.latencyMs.p99)}`, row && row.latencyMs.p99 < 10)
  }

  const balancing = data<BalancingData>('balancing')
  for (const row of balancing?.strategies ?? []) {
    add(
      `balancing after a restart, ${row.strategy}: spread of open ${row.mode === 'poll' ? 'polls' : 'streams'}, p99`,
      '(compare the two)',
      `${row.spread.afterNewClients.join(' / ')} (larger ${row.largerSharePercent}%), p99 ${ms(row.latencyMs.p99)}`,
      undefined,
    )
  }
  return rows
}

export function targetsTable(rows: TargetRow[], quick: boolean): string {
  return [
    table([['issue 14 target', 'target', 'measured', 'met'], ...rows.map((r) => [r.figure, r.target, r.measured, r.met === undefined ? '-' : r.met ? 'yes' : 'no'])]),
    quick ? '(--quick: scaled-down scenarios, so the figures are not comparable with the targets; none is marked met or not)' : '(full run on this machine: the figures are as noisy as the machine was quiet; see the load averages above)',
  ].join('\n')
}
