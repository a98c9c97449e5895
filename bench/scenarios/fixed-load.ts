import {performance} from 'node:perf_hooks'

import {Http, MessageSender, receivers, sleep, until} from '../lib/http.js'
import {CPU_HEADERS, CPU_NOTE, cpuBetween, cpuColumns, cpuPerMessage, cpuSnapshot, loopDelay} from '../lib/metrics.js'
import type {ReceiveMode} from '../lib/options.js'
import {usersOn, tooManyUsers, type Scenario, type ScenarioContext} from '../lib/scenario.js'
import {round, table} from '../lib/stats.js'
import {Deliveries, openLoop} from '../lib/traffic.js'

/**
 * 2. Latency at fixed load: an open loop of 1:1 messages at a steady rate
 * (500/s, then a 2,000/s step) among users spread over two chat servers, all
 * receiving by long-poll or by event stream (once per mode, fresh users each
 * time). Latency percentiles at the receiver, whether the rate was sustained,
 * and the CPU per delivered message.
 */
/** Beyond this many unanswered sends the system is not keeping up; more would only measure our queue. */
const MAX_IN_FLIGHT = 2_000
/** A step is sustained when at least this share of its rate was sent and delivered in the window, none skipped and none missing. */
const SUSTAINED_SHARE = 0.95

export const fixedLoad: Scenario = async (context) => {
  const count = context.options.quick ? 100 : 200
  const skip = await tooManyUsers(context, count)
  if (skip) return {skipped: skip}

  const rows: Array<Array<string | number>> = [
    ['mode', 'target msg/s', 'seconds', 'sent/s', 'delivered/s', 'sustained', 'p50 ms', 'p95 ms', 'p99 ms', 'max ms', '201 p99 ms', ...CPU_HEADERS],
  ]
  const notes: string[] = []
  const modes = []
  for (const mode of context.options.modes) {
    const {steps, receiveFailures} = await measure(context, mode, count)
    for (const step of steps) {
      const l = step.latencyMs
      rows.push([
        mode, step.targetRate, step.windowSeconds, step.sendsStartedPerSecond, step.deliveredPerSecond, step.sustained ? 'yes' : 'no',
        l.p50, l.p95, l.p99, l.max, step.ackLatencyMs.p99, ...cpuColumns(step.cpu, step.cpuMsPerMessage),
      ])
      notes.push(
        `${mode} ${step.targetRate}/s: acked ${step.acked}, missing after drain ${step.missing}, skipped (over ${MAX_IN_FLIGHT} in flight) ${step.skipped}, failures: ${JSON.stringify(step.failures)}; ` +
          `CPU chat servers ${step.cpu.serversPercent.join(' + ')}% of a core, PostgreSQL ${step.cpu.postgresPercent ?? '?'}%, machine ${step.cpu.machinePercent}% of all cores; ` +
          `generator event-loop delay p99 ${step.generatorLoopDelayMs.p99} ms`,
      )
    }
    notes.push(`${mode}: receive failures: ${receiveFailures}`)
    modes.push({mode, steps, receiveFailures: receiveFailures.toJSON()})
  }
  notes.unshift(
    `${count} users on 2 chat servers; p50…max: send start → receipt by the recipient; 201: send start → the sender's 201; ` +
      `sustained: at least ${SUSTAINED_SHARE * 100}% of the rate sent and delivered in the window, nothing skipped or missing`,
    CPU_NOTE,
  )
  return {text: [table(rows), ...notes].join('\n'), data: {users: count, servers: 2, modes}}
}

async function measure(context: ScenarioContext, mode: ReceiveMode, count: number) {
  const quick = context.options.quick
  const steps = [
    {rate: 500, ms: quick ? 1_500 : 20_000},
    {rate: 2_000, ms: quick ? 1_000 : 10_000},
  ]
  const warmUpMs = quick ? 500 : 2_000
  const target = await context.target()
  const servers = target.serverUrls.slice(0, 2)
  const users = await usersOn(context, 'fl', count, servers)
  const http = new Http(count + MAX_IN_FLIGHT + 16)
  const sender = new MessageSender(http, context.ciphertext)
  let deliveries = new Deliveries()
  const inbound = receivers(mode, http, (_user, events, at) => {
    for (const event of events) if (event.type === 'message' && event.id) deliveries.received(event.id, at)
  })
  const results = []
  try {
    for (const user of users) inbound.start(user)
    await sleep(500)
    for (const step of steps) {
      deliveries = new Deliveries()
      const load = {rate: step.rate, senders: users, recipients: users, sender, deliveries, maxInFlight: MAX_IN_FLIGHT}
      await openLoop({...load, durationMs: warmUpMs})
      const before = await cpuSnapshot(servers)
      const lag = loopDelay()
      const from = performance.now()
      deliveries.setWindow(from, from + step.ms)
      const {issued, skipped} = await openLoop({...load, durationMs: step.ms})
      const generatorLoopDelayMs = lag.stop()
      const cpu = cpuBetween(before, await cpuSnapshot(servers))
      await until(() => deliveries.outstanding === 0, 10_000)
      const summary = deliveries.summary()
      const floor = step.rate * SUSTAINED_SHARE
      const sustained = skipped === 0 && summary.missing === 0 && summary.sendsStartedPerSecond >= floor && summary.deliveredPerSecond >= floor
      const cpuMsPerMessage = cpuPerMessage(cpu, summary.windowSeconds, deliveries.deliveredInWindow)
      results.push({targetRate: step.rate, warmUpMs, issued, skipped, sustained, ...summary, cpu, cpuMsPerMessage, generatorLoopDelayMs, deliveredShare: round(summary.deliveredPerSecond / step.rate, 3)})
    }
    return {steps: results, receiveFailures: inbound.failures}
  } finally {
    await inbound.stop()
    await http.close()
  }
}
