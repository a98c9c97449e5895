import {performance} from 'node:perf_hooks'

import {Http, MessageSender, receivers, sleep, until} from '../lib/http.js'
import {CPU_HEADERS, CPU_NOTE, cpuBetween, cpuColumns, cpuPerMessage, cpuSnapshot, loopDelay} from '../lib/metrics.js'
import type {ReceiveMode} from '../lib/options.js'
import {usersOn, tooManyUsers, type Scenario, type ScenarioContext} from '../lib/scenario.js'
import {table} from '../lib/stats.js'
import {closedLoop, Deliveries} from '../lib/traffic.js'

/**
 * 1. Throughput: U users spread over two chat servers, each keeping one 1:1
 * send in flight to a random other user (closed loop) while receiving its own
 * events by long-poll or by event stream (once per mode, fresh users each
 * time). Acknowledged sends/s, delivered messages/s and send→receive latency
 * at the receiver, after a warm-up; CPU per delivered message.
 */
export const throughput: Scenario = async (context) => {
  const count = context.options.quick ? 40 : 100
  const skip = await tooManyUsers(context, count)
  if (skip) return {skipped: skip}

  const rows: Array<Array<string | number>> = [
    ['mode', 'users', 'window s', 'acked sends/s', 'delivered msg/s', 'p50 ms', 'p95 ms', 'p99 ms', 'max ms', '201 p50 ms', '201 p99 ms', ...CPU_HEADERS],
  ]
  const notes: string[] = []
  const modes = []
  for (const mode of context.options.modes) {
    const result = await measure(context, mode, count)
    const {summary: s, cpu, perMessage} = result
    const l = s.latencyMs
    rows.push([mode, count, s.windowSeconds, s.ackedPerSecond, s.deliveredPerSecond, l.p50, l.p95, l.p99, l.max, s.ackLatencyMs.p50, s.ackLatencyMs.p99, ...cpuColumns(cpu, perMessage)])
    notes.push(
      `${mode}: CPU chat servers ${cpu.serversPercent.map((p) => `${p}%`).join(' + ')} of a core, PostgreSQL backends ${cpu.postgresPercent ?? '?'}%, machine ${cpu.machinePercent}% of all cores, ` +
        `generator ${cpu.generatorPercent}% (event-loop delay p99 ${result.generatorLoopDelayMs.p99} ms); acked ${s.acked}, delivered ${s.delivered}, missing after drain ${s.missing}, ` +
        `duplicates ${s.duplicates}; failures: ${result.failures}; receive failures: ${result.receiveFailures}`,
    )
    modes.push({mode, ...s, cpu, cpuMsPerMessage: perMessage, generatorLoopDelayMs: result.generatorLoopDelayMs, receiveFailures: result.receiveFailures.toJSON()})
  }
  const text = [
    table(rows),
    "p50…max: send start → receipt by the recipient (its poll answer, or its stream); 201: send start → the sender's 201",
    CPU_NOTE,
    ...notes,
  ].join('\n')
  return {text, data: {users: count, servers: 2, modes}}
}

async function measure(context: ScenarioContext, mode: ReceiveMode, count: number) {
  const quick = context.options.quick
  const warmUpMs = quick ? 1_000 : 3_000
  const runMs = quick ? 4_000 : 20_000
  const target = await context.target()
  const servers = target.serverUrls.slice(0, 2)
  const users = await usersOn(context, 'tp', count, servers)
  const http = new Http(count * 2 + 16)
  const sender = new MessageSender(http, context.ciphertext)
  const deliveries = new Deliveries()
  const inbound = receivers(mode, http, (_user, events, at) => {
    for (const event of events) if (event.type === 'message' && event.id) deliveries.received(event.id, at)
  })
  try {
    for (const user of users) inbound.start(user)
    await sleep(500)
    await closedLoop({senders: users, recipients: users, until: performance.now() + warmUpMs, sender, deliveries})

    const before = await cpuSnapshot(servers)
    const lag = loopDelay()
    const from = performance.now()
    deliveries.setWindow(from, from + runMs)
    await closedLoop({senders: users, recipients: users, until: from + runMs, sender, deliveries})
    const generatorLoopDelayMs = lag.stop()
    const cpu = cpuBetween(before, await cpuSnapshot(servers))
    await until(() => deliveries.outstanding === 0, 10_000)
    const summary = deliveries.summary()
    const perMessage = cpuPerMessage(cpu, summary.windowSeconds, deliveries.deliveredInWindow)
    return {summary, cpu, perMessage, generatorLoopDelayMs, failures: deliveries.failures, receiveFailures: inbound.failures}
  } finally {
    await inbound.stop()
    await http.close()
  }
}
