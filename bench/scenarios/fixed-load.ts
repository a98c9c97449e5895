import {performance} from 'node:perf_hooks'

import {Http, MessageSender, Pollers, sleep, until} from '../lib/http.js'
import {cpuBetween, cpuPerMessage, cpuSnapshot, loopDelay} from '../lib/metrics.js'
import {usersOn, tooManyUsers, type Scenario} from '../lib/scenario.js'
import {table} from '../lib/stats.js'
import {Deliveries, openLoop} from '../lib/traffic.js'

/**
 * 2. Latency at fixed load: an open loop of 1:1 messages at a steady rate
 * (500/s, then a 2,000/s step) among users spread over two chat servers, all
 * long-polling. Latency percentiles at the receiver and the CPU each chat
 * server used (process_cpu_seconds_total from its /metrics, before and after).
 */
export const fixedLoad: Scenario = async (context) => {
  const quick = context.options.quick
  const count = quick ? 100 : 200
  const steps = [
    {rate: 500, ms: quick ? 1_500 : 30_000},
    {rate: 2_000, ms: quick ? 1_000 : 15_000},
  ]
  const warmUpMs = quick ? 500 : 2_000
  /** Beyond this many unanswered sends the system is not keeping up; more would only measure our queue. */
  const maxInFlight = 2_000
  const skip = await tooManyUsers(context, count)
  if (skip) return {skipped: skip}

  const target = await context.target()
  const servers = target.serverUrls.slice(0, 2)
  const users = await usersOn(context, 'fl', count, servers)
  const http = new Http(count + maxInFlight + 16)
  const sender = new MessageSender(http, context.ciphertext)
  let deliveries = new Deliveries()
  const pollers = new Pollers(http, (_user, events, at) => {
    for (const event of events) if (event.type === 'message' && event.id) deliveries.received(event.id, at)
  })
  const rows: Array<Array<string | number>> = [
    ['target msg/s', 'seconds', 'sent/s', 'acked/s', 'delivered/s', 'p50 ms', 'p95 ms', 'p99 ms', 'max ms', '201 p50 ms', '201 p99 ms', 'server CPU %', 'Postgres CPU %', 'machine CPU %', 'generator CPU %'],
  ]
  const data = []
  const notes: string[] = []
  try {
    for (const user of users) pollers.start(user)
    await sleep(500)
    for (const step of steps) {
      deliveries = new Deliveries()
      const load = {rate: step.rate, senders: users, recipients: users, sender, deliveries, maxInFlight}
      await openLoop({...load, durationMs: warmUpMs})
      const before = await cpuSnapshot(servers)
      const lag = loopDelay()
      const from = performance.now()
      deliveries.setWindow(from, from + step.ms)
      const {issued, skipped} = await openLoop({...load, durationMs: step.ms})
      const generatorLag = lag.stop()
      const cpu = cpuBetween(before, await cpuSnapshot(servers))
      await until(() => deliveries.outstanding === 0, 10_000)
      const summary = deliveries.summary()
      const l = summary.latencyMs
      const perMessage = cpuPerMessage(cpu, summary.windowSeconds, deliveries.deliveredInWindow)
      rows.push([
        step.rate,
        summary.windowSeconds,
        summary.sendsStartedPerSecond,
        summary.ackedPerSecond,
        summary.deliveredPerSecond,
        l.p50,
        l.p95,
        l.p99,
        l.max,
        summary.ackLatencyMs.p50,
        summary.ackLatencyMs.p99,
        cpu.serversPercent.join(' + '),
        cpu.postgresPercent ?? '?',
        cpu.machinePercent,
        cpu.generatorPercent,
      ])
      notes.push(
        `${step.rate}/s: acked ${summary.acked}, missing after drain ${summary.missing}, skipped (over ${maxInFlight} in flight) ${skipped}, ` +
          `failures: ${deliveries.failures}; generator event-loop delay p99 ${generatorLag.p99} ms; ` +
          `CPU per delivered message: chat servers ${perMessage.servers} ms, PostgreSQL backends ${perMessage.postgres ?? '?'} ms`,
      )
      data.push({targetRate: step.rate, warmUpMs, issued, skipped, ...summary, cpu, cpuMsPerMessage: perMessage, generatorLoopDelayMs: generatorLag})
    }
    notes.push(`${count} users on ${servers.length} chat servers; poll failures: ${pollers.failures}`)
    notes.push('p50…max: send start → receipt by the recipient\'s poll; 201: send start → the sender\'s 201; CPU: % of one core per chat server and for PostgreSQL (the backends serving the bench database), % of all cores for the machine')
    return {text: [table(rows), ...notes].join('\n'), data: {users: count, servers: servers.length, steps: data, pollFailures: pollers.failures.toJSON()}}
  } finally {
    await pollers.stop()
    await http.close()
  }
}
