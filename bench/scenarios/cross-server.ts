import {performance} from 'node:perf_hooks'

import type {Target} from '../lib/cluster.js'
import {Http, MessageSender, receivers, sleep, until} from '../lib/http.js'
import {CPU_HEADERS, CPU_NOTE, cpuBetween, cpuColumns, cpuPerMessage, cpuSnapshot, loopDelay, sample, scrape, type CpuPerMessage, type CpuUse} from '../lib/metrics.js'
import type {ReceiveMode} from '../lib/options.js'
import {usersOn, type Scenario, type ScenarioContext} from '../lib/scenario.js'
import {table} from '../lib/stats.js'
import {Deliveries, openLoop, type DeliverySummary} from '../lib/traffic.js'

/**
 * 7. Cross-server latency at light load: three chat servers, receivers on
 * server C (long-polling, or following their event streams: once per mode,
 * fresh users each time), senders on server A, ~50 messages/s. Run once per
 * wake-up path, each on a cluster of its own: peer push and the re-check both
 * on (the default), the re-check only (FASTCHAT_PEER_PUSH=off), and peer push
 * only (FASTCHAT_RECHECK_MS=0).
 */
const MODES = [
  {name: 'default (peer push + re-check)', env: {}},
  {name: 'FASTCHAT_PEER_PUSH=off (re-check only)', env: {FASTCHAT_PEER_PUSH: 'off'}},
  {name: 'FASTCHAT_RECHECK_MS=0 (peer push only)', env: {FASTCHAT_RECHECK_MS: '0'}, full: true},
] as const

export const crossServer: Scenario = async (context) => {
  const rows: Array<Array<string | number>> = [['servers: wake-up path', 'mode', 'msg/s', 'seconds', 'p50 ms', 'p95 ms', 'p99 ms', 'max ms', 'missing', 'peer pushes', 'gen lag p99 ms', ...CPU_HEADERS]]
  const data = []
  const notes: string[] = []
  for (const mode of MODES) {
    if ('full' in mode && context.options.quick) continue
    let target: Target
    if (context.startCluster) {
      target = await context.startCluster(3, mode.env)
    } else if (Object.keys(mode.env).length === 0) {
      target = await context.target()
      if (target.serverUrls.length < 3) notes.push(`the cluster has ${target.serverUrls.length} chat server(s): senders on the first, receivers on the last`)
    } else {
      notes.push(`${mode.name}: skipped (--superserver: the servers' settings are not ours to change)`)
      continue
    }
    try {
      for (const receive of context.options.modes) {
        const result = await measure(context, target, receive)
        const l = result.latencyMs
        rows.push([mode.name, receive, result.rate, result.windowSeconds, l.p50, l.p95, l.p99, l.max, result.missing, result.peerPushes, result.generatorLoopDelayMs.p99, ...cpuColumns(result.cpu, result.cpuMsPerMessage)])
        data.push({mode: mode.name, receive, env: mode.env, ...result})
        const failures = {...result.failures, ...result.receiveFailures}
        if (Object.keys(failures).length > 0) notes.push(`${mode.name}, ${receive}: failures ${JSON.stringify(failures)}`)
      }
    } finally {
      if (context.startCluster) await target.stop()
    }
  }
  if (data.length === 0) return {skipped: notes.join('; ')}
  notes.unshift(
    'receivers poll (or stream from) server C, senders send through server A; "peer pushes" are the pushes server A sent to its peers (ok) during the run',
    `${CPU_NOTE}; the chat servers are all three`,
  )
  return {text: [table(rows), ...notes].join('\n'), data: {modes: data}}
}

async function measure(
  context: ScenarioContext,
  target: Target,
  receive: ReceiveMode,
): Promise<DeliverySummary & {rate: number; peerPushes: number; generatorLoopDelayMs: {p99: number}; receiveFailures: Record<string, number>; cpu: CpuUse; cpuMsPerMessage: CpuPerMessage}> {
  const quick = context.options.quick
  const rate = 50
  const runMs = quick ? 1_500 : 10_000
  const count = 20
  const serverA = target.serverUrls[0]!
  const serverC = target.serverUrls[Math.min(2, target.serverUrls.length - 1)]!
  const recipients = await usersOn(context, 'xr', count, [serverC])
  const senders = await usersOn(context, 'xs', count, [serverA])
  const http = new Http(count * 3 + 16)
  const sender = new MessageSender(http, context.ciphertext)
  const deliveries = new Deliveries()
  const inbound = receivers(receive, http, (_user, events, at) => {
    for (const event of events) if (event.type === 'message' && event.id) deliveries.received(event.id, at)
  })
  try {
    for (const user of recipients) inbound.start(user)
    // Presence (where each receiver polls) is recorded in a batch a moment after the first poll.
    await sleep(500)
    const load = {rate, senders, recipients, sender, deliveries, maxInFlight: 1_000}
    // Fresh servers and a fresh load generator: let the JIT settle first.
    await openLoop({...load, durationMs: 2_000})
    const pushesBefore = await peerPushes(serverA)
    const before = await cpuSnapshot(target.serverUrls)
    const lag = loopDelay()
    const from = performance.now()
    deliveries.setWindow(from, from + runMs)
    await openLoop({...load, durationMs: runMs})
    const generatorLoopDelayMs = lag.stop()
    const cpu = cpuBetween(before, await cpuSnapshot(target.serverUrls))
    await until(() => deliveries.outstanding === 0, 10_000)
    const peerPushCount = (await peerPushes(serverA)) - pushesBefore
    const summary = deliveries.summary()
    const cpuMsPerMessage = cpuPerMessage(cpu, summary.windowSeconds, deliveries.deliveredInWindow)
    return {...summary, rate, peerPushes: peerPushCount, generatorLoopDelayMs, receiveFailures: inbound.failures.toJSON(), cpu, cpuMsPerMessage}
  } finally {
    await inbound.stop()
    await http.close()
  }
}

async function peerPushes(server: string): Promise<number> {
  return sample(await scrape(server), 'fastchat_server_peer_pushes_total', 'result="ok"')
}
