import {performance} from 'node:perf_hooks'

import {registryView, type Target} from '../lib/cluster.js'
import {Http, MessageSender, receivers, sleep, until, type BenchUser, type Receivers} from '../lib/http.js'
import {cpuBetween, cpuSnapshot} from '../lib/metrics.js'
import type {ReceiveMode} from '../lib/options.js'
import {usersOn, tooManyUsers, type Scenario, type ScenarioContext} from '../lib/scenario.js'
import {round, table} from '../lib/stats.js'
import {Deliveries, openLoop} from '../lib/traffic.js'

/**
 * 8. Balancing (issue 14, item 7): the superserver's strategies on an uneven
 * load. Per strategy, a cluster of its own (2 chat servers, the superserver
 * started with --strategy): clients are assigned through GET /v1/assign and
 * connect; with traffic running, chat server 2 is restarted (SIGTERM: it
 * drains, its clients ask the superserver again and land on server 1, and it
 * comes back empty); then as many new clients connect. The spread of open
 * polls (or streams) over the two servers, from the superserver's registry,
 * and the send→receive latency of a measured window after that.
 */
export const STRATEGIES = ['round-robin', 'least-loaded'] as const
/** Beyond this many unanswered sends the generator skips sends (as in the fixed-load scenario). */
const MAX_IN_FLIGHT = 2_000
/** The chat servers' FASTCHAT_SHUTDOWN_GRACE_MS here: how long the restarted server drains before it exits. */
const SHUTDOWN_GRACE_MS = 2_000

export const balancing: Scenario = async (context) => {
  const startCluster = context.startCluster
  if (!startCluster) return {skipped: 'needs clusters of its own, with a superserver started per strategy (not with --superserver)'}
  const quick = context.options.quick
  const settings = {first: quick ? 60 : 300, later: quick ? 60 : 300, rate: quick ? 200 : 600, windowMs: quick ? 2_000 : 10_000}
  const skip = await tooManyUsers(context, STRATEGIES.length * (settings.first + settings.later))
  if (skip) return {skipped: skip}
  // One receive mode: long-polls unless the run asked for streams only.
  const mode: ReceiveMode = context.options.modes[0] ?? 'poll'

  const rows: Array<Array<string | number>> = [
    ['strategy', 'mode', 'clients', 'at start 1/2', 'after restart 1/2', 'after new clients 1/2', 'larger share %', 'msg/s', 'p50 ms', 'p99 ms', 'max ms', 'server CPU % 1/2', 'missing', 'restart s'],
  ]
  const notes: string[] = []
  const data = []
  for (const strategy of STRATEGIES) {
    // A SIGTERM'd server under load otherwise uses its whole 10 s grace before it exits; the restart is the point, not the wait.
    // Errors only: the restarted server logs every request it answers 503 while it drains.
    const target = await startCluster(2, {FASTCHAT_SHUTDOWN_GRACE_MS: String(SHUTDOWN_GRACE_MS)}, {strategy, logLevel: 'error'})
    try {
      const r = await measure(context, target, mode, settings)
      const l = r.latencyMs
      rows.push([
        strategy, mode, settings.first + settings.later, r.spread.start.join('/'), r.spread.afterRestart.join('/'), r.spread.afterNewClients.join('/'), r.largerSharePercent,
        r.deliveredPerSecond, l.p50, l.p99, l.max, r.cpu.serversPercent.join('/'), r.missing, r.restartSeconds,
      ])
      if (Object.keys(r.failures).length + Object.keys(r.receiveFailures).length > 0) {
        notes.push(`${strategy}: send failures ${JSON.stringify(r.failures)}, ${mode} failures ${JSON.stringify(r.receiveFailures)} (most are the restart's: the draining server answers 503, its connections close)`)
      }
      data.push({strategy, mode, ...settings, ...r})
    } finally {
      await target.stop()
    }
  }
  notes.unshift(
    `${settings.first} clients assigned and connected; ${settings.rate} msg/s among the connected clients from then on; chat server 2 restarted (SIGTERM, back empty a second later); ` +
      `then ${settings.later} more clients; then the measured ${settings.windowMs / 1000} s window (p50…max: send start → receipt, sends through each sender's own server). ` +
      `"1/2": open ${mode === 'poll' ? 'polls' : 'streams'} on chat server 1 / 2 from the superserver's registry (heartbeats, ≤ 2 s old); larger share: server with more of them, after the new clients`,
  )
  return {text: [table(rows), ...notes].join('\n'), data: {strategies: data}}
}

async function measure(
  context: ScenarioContext,
  target: Target,
  mode: ReceiveMode,
  settings: {first: number; later: number; rate: number; windowMs: number},
) {
  const superserver = target.superserverUrl
  const firstUsers = await usersOn(context, 'bal', settings.first, target.serverUrls)
  const laterUsers = await usersOn(context, 'baln', settings.later, target.serverUrls)
  const http = new Http(settings.first + settings.later + MAX_IN_FLIGHT + 32)
  const sender = new MessageSender(http, context.ciphertext)
  const deliveries = new Deliveries()
  /** What a client does when its server fails or drains: asks the superserver again. */
  const assign = async (user: BenchUser): Promise<void> => {
    const deadline = performance.now() + 20_000
    while (performance.now() < deadline) {
      const answer = await http.call<{server: string}>('GET', `${superserver}/v1/assign`).catch(() => undefined)
      if (answer?.status === 200) {
        user.server = answer.body.server
        return
      }
      await sleep(100)
    }
    throw new Error(`${superserver}/v1/assign gave no server within 20 s`)
  }
  const inbound: Receivers = receivers(mode, http, (_user, events, at) => {
    for (const event of events) if (event.type === 'message' && event.id) deliveries.received(event.id, at)
  }, {reassign: assign})
  /** The clients connected so far: the traffic's senders and recipients (the arrays grow as clients join). */
  const connected: BenchUser[] = []
  const join = async (users: BenchUser[]) => {
    // One after the other, as clients arriving: each assignment sees the ones before.
    for (const user of users) {
      await assign(user)
      inbound.start(user)
      connected.push(user)
    }
  }
  /** Open polls (or streams) on servers 1 and 2, once the registry counts about `count` of them (heartbeat-late, and a long-poll between two polls is not open). */
  const spread = async (count: number): Promise<number[]> => {
    let open = [0, 0]
    const deadline = performance.now() + 20_000
    while (performance.now() < deadline) {
      const view = await registryView(superserver)
      open = target.serverUrls.map((url) => {
        const server = view.get(url)
        return server?.healthy ? server.openPolls + server.openStreams : 0
      })
      if (open.reduce((a, b) => a + b, 0) >= count - Math.max(2, Math.ceil(count * 0.03))) break
      await sleep(200)
    }
    return open
  }

  let background = true
  let backgroundLoop: Promise<void> | undefined
  try {
    await join(firstUsers)
    const start = await spread(connected.length)
    // Traffic from now on, in short open-loop segments (the list of clients changes between them).
    backgroundLoop = (async () => {
      while (background) await openLoop({rate: settings.rate, durationMs: 500, senders: connected, recipients: connected, sender, deliveries, maxInFlight: MAX_IN_FLIGHT})
    })()
    await sleep(2_000)
    const restartStart = performance.now()
    await target.restartServer!(1)
    const restartSeconds = round((performance.now() - restartStart) / 1000, 1)
    const afterRestart = await spread(connected.length)
    await join(laterUsers)
    const afterNewClients = await spread(connected.length)
    background = false
    await backgroundLoop

    const before = await cpuSnapshot(target.serverUrls)
    const from = performance.now()
    deliveries.setWindow(from, from + settings.windowMs)
    await openLoop({rate: settings.rate, durationMs: settings.windowMs, senders: connected, recipients: connected, sender, deliveries, maxInFlight: MAX_IN_FLIGHT})
    const cpu = cpuBetween(before, await cpuSnapshot(target.serverUrls))
    await until(() => deliveries.outstanding === 0, 10_000)
    const total = afterNewClients.reduce((a, b) => a + b, 0)
    const summary = deliveries.summary()
    return {
      ...summary,
      spread: {start, afterRestart, afterNewClients},
      largerSharePercent: total > 0 ? round((Math.max(...afterNewClients) / total) * 100, 0) : 0,
      restartSeconds,
      cpu,
      receiveFailures: inbound.failures.toJSON(),
    }
  } finally {
    background = false
    await backgroundLoop?.catch(() => undefined)
    await inbound.stop()
    await http.close()
  }
}
