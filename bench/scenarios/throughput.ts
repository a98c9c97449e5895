import {performance} from 'node:perf_hooks'

import {Http, MessageSender, Pollers, sleep, until} from '../lib/http.js'
import {cpuBetween, cpuPerMessage, cpuSnapshot, loopDelay} from '../lib/metrics.js'
import {usersOn, tooManyUsers, type Scenario} from '../lib/scenario.js'
import {table} from '../lib/stats.js'
import {closedLoop, Deliveries} from '../lib/traffic.js'

/**
 * 1. Throughput: U users spread over two chat servers, each keeping one 1:1
 * send in flight to a random other user (closed loop) while long-polling its
 * own events. Acknowledged sends/s, delivered messages/s and send→receive
 * latency at the receiver, after a warm-up.
 */
export const throughput: Scenario = async (context) => {
  const quick = context.options.quick
  const count = quick ? 40 : 100
  const warmUpMs = quick ? 1_000 : 3_000
  const runMs = quick ? 4_000 : 20_000
  const skip = await tooManyUsers(context, count)
  if (skip) return {skipped: skip}

  const target = await context.target()
  const servers = target.serverUrls.slice(0, 2)
  const users = await usersOn(context, 'tp', count, servers)
  const http = new Http(count * 2 + 16)
  const sender = new MessageSender(http, context.ciphertext)
  const deliveries = new Deliveries()
  const pollers = new Pollers(http, (_user, events, at) => {
    for (const event of events) if (event.type === 'message' && event.id) deliveries.received(event.id, at)
  })
  try {
    for (const user of users) pollers.start(user)
    await sleep(500)
    await closedLoop({senders: users, recipients: users, until: performance.now() + warmUpMs, sender, deliveries})

    const before = await cpuSnapshot(servers)
    const lag = loopDelay()
    const from = performance.now()
    deliveries.setWindow(from, from + runMs)
    await closedLoop({senders: users, recipients: users, until: from + runMs, sender, deliveries})
    const generatorLag = lag.stop()
    const cpu = cpuBetween(before, await cpuSnapshot(servers))
    await until(() => deliveries.outstanding === 0, 10_000)

    const summary = deliveries.summary()
    const {latencyMs: l} = summary
    const perMessage = cpuPerMessage(cpu, summary.windowSeconds, deliveries.deliveredInWindow)
    const text = [
      table([
        ['users', 'servers', 'window s', 'acked sends/s', 'delivered msg/s', 'p50 ms', 'p95 ms', 'p99 ms', 'max ms', '201 p50 ms', '201 p99 ms'],
        [count, servers.length, summary.windowSeconds, summary.ackedPerSecond, summary.deliveredPerSecond, l.p50, l.p95, l.p99, l.max, summary.ackLatencyMs.p50, summary.ackLatencyMs.p99],
      ]),
      'p50…max: send start → receipt by the recipient\'s poll; 201: send start → the sender\'s 201',
      `CPU: chat servers ${cpu.serversPercent.map((p) => `${p}%`).join(' + ')} of a core, PostgreSQL backends ${cpu.postgresPercent ?? '?'}% of a core, machine ${cpu.machinePercent}% of all cores, load generator ${cpu.generatorPercent}% of a core (event-loop delay p99 ${generatorLag.p99} ms)`,
      `CPU per delivered message: chat servers ${perMessage.servers} ms, PostgreSQL backends ${perMessage.postgres ?? '?'} ms, load generator ${perMessage.generator} ms`,
      `acked ${summary.acked}, delivered ${summary.delivered}, missing after drain ${summary.missing}, duplicates ${summary.duplicates}; failures: ${deliveries.failures}; poll failures: ${pollers.failures}`,
    ].join('\n')
    return {text, data: {users: count, servers: servers.length, warmUpMs, ...summary, cpu, cpuMsPerMessage: perMessage, generatorLoopDelayMs: generatorLag, pollFailures: pollers.failures.toJSON()}}
  } finally {
    await pollers.stop()
    await http.close()
  }
}
