import {performance} from 'node:perf_hooks'

import {type BenchEvent, type BenchUser, Failures, Http, MessageSender, receivers, sleep, until} from '../lib/http.js'
import {CPU_HEADERS, CPU_NOTE, cpuBetween, cpuColumns, type CpuPerMessage, cpuPerMessage, cpuSnapshot, loopDelay} from '../lib/metrics.js'
import type {ReceiveMode} from '../lib/options.js'
import type {Target} from '../lib/cluster.js'
import {usersOn, tooManyUsers, type Scenario, type ScenarioContext} from '../lib/scenario.js'
import {table} from '../lib/stats.js'
import {closedLoop, Deliveries, type DeliverySummary} from '../lib/traffic.js'

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

/**
 * 9. Receipts (issue 16): the closed loop of scenario 1 on two fresh
 * clusters, receipts off then on (compareReceipts). A scenario of its own,
 * so that the CI's smoke run (`--quick --only throughput,…`) stays short.
 */
export const receipts: Scenario = async (context) => {
  const count = context.options.quick ? 40 : 100
  const skip = await tooManyUsers(context, count)
  if (skip) return {skipped: skip}
  const random = await compareReceipts(context, count, false)
  if (!random) return {skipped: 'needs clusters of its own (not with --superserver)'}
  const conversations = (await compareReceipts(context, count, true))!
  return {
    text: [
      'random pairs (the closed loop of scenario 1: each message to any other user):',
      random.text,
      '',
      `conversations (each user writes to ${CONVERSATIONS_PER_USER} others, a ring):`,
      conversations.text,
    ].join('\n'),
    data: {users: count, servers: 2, random: random.data, conversations: conversations.data},
  }
}

/**
 * Receipts on against off (issue 16): the same closed loop on two fresh
 * clusters, in the first receive mode. Off: FASTCHAT_DELIVERY_RECEIPTS=off
 * and no read receipts. On: delivered receipts (the default), and every
 * receiver posts read receipts as the client library does (one request a
 * second for the batches it took, one entry per sender), with a fixed
 * ciphertext (the server cannot tell).
 * Off first, then on: the machine's drift goes against the receipts. With
 * `conversations`, each user writes to its partners only (ringPartners).
 */
async function compareReceipts(context: ScenarioContext, count: number, conversations: boolean) {
  const startCluster = context.startCluster
  if (!startCluster) return undefined
  const mode = context.options.modes[0]!
  const variants: {name: string; env: Record<string, string>; readReceipts: boolean}[] = [
    {name: 'receipts off', env: {FASTCHAT_DELIVERY_RECEIPTS: 'off'}, readReceipts: false},
    {name: 'receipts on', env: {}, readReceipts: true},
  ]
  const rows: Array<Array<string | number>> = [['receipts', 'mode', 'acked sends/s', 'delivered msg/s', 'p50 ms', 'p99 ms', 'read receipts/s', ...CPU_HEADERS]]
  const data: Array<DeliverySummary & {variant: string; mode: string; cpuMsPerMessage: CpuPerMessage; readReceiptsPerSecond: number; receiptFailures: Record<string, number>}> = []
  for (const variant of variants) {
    const target = await startCluster(2, variant.env, {logLevel: 'error'})
    try {
      const result = await measure(context, mode, count, {target, readReceipts: variant.readReceipts, conversations})
      const {summary: s, cpu, perMessage} = result
      rows.push([variant.name, mode, s.ackedPerSecond, s.deliveredPerSecond, s.latencyMs.p50, s.latencyMs.p99, result.readReceiptsPerSecond, ...cpuColumns(cpu, perMessage)])
      data.push({variant: variant.name, mode, ...s, cpuMsPerMessage: perMessage, readReceiptsPerSecond: result.readReceiptsPerSecond, receiptFailures: result.receiptFailures})
    } finally {
      await target.stop()
    }
  }
  const [off, on] = data as [(typeof data)[number], (typeof data)[number]]
  const ratio = off.deliveredPerSecond > 0 ? Math.round((on.deliveredPerSecond / off.deliveredPerSecond) * 1000) / 1000 : 0
  // Chat servers and PostgreSQL together when PostgreSQL's share is known, else the chat servers alone.
  const perMessage = (entry: (typeof data)[number]) => entry.cpuMsPerMessage.serversAndPostgres ?? entry.cpuMsPerMessage.servers
  const cpuRatio = perMessage(off) > 0 ? Math.round((perMessage(on) / perMessage(off)) * 1000) / 1000 : null
  const text = [
    table(rows),
    `receipts on / off: delivered msg/s × ${ratio}, CPU ms per delivered message × ${cpuRatio ?? '?'} (target: throughput within 10%); receipt failures: ${JSON.stringify(on.receiptFailures)}`,
  ].join('\n')
  return {text, data: {variants: data, ratio, cpuRatio}}
}

/**
 * Read receipts as the client library sends them while following
 * (client/receipts.ts acknowledgeSoon): the batches a user takes within a
 * second go in one request, one entry per sender, with a fixed ciphertext
 * (the server relays it unread).
 */
function readReceiptPoster(http: Http, ciphertext: string, batchMs = 1_000) {
  let posted = 0
  const failures = new Failures()
  const queued = new Map<BenchUser, Set<string>>()
  let timer: NodeJS.Timeout | undefined
  const flush = () => {
    timer = undefined
    for (const [user, senders] of queued) {
      const body = JSON.stringify({receipts: [...senders].slice(0, 100).map((to) => ({to, ciphertext}))})
      http.call('POST', `${user.server}/v1/receipts`, {token: user.token, body}).then(
        (answer) => (answer.status === 204 ? posted++ : failures.add(`receipts HTTP ${answer.status}`)),
        (error: unknown) => failures.add(`receipts ${(error as Error).message}`),
      )
    }
    queued.clear()
  }
  const post = (user: BenchUser, events: BenchEvent[]) => {
    for (const event of events) {
      if (event.type !== 'message' || !event.from) continue
      let senders = queued.get(user)
      if (!senders) queued.set(user, (senders = new Set()))
      senders.add(event.from)
    }
    if (queued.size > 0) timer ??= setTimeout(flush, batchMs)
  }
  const stop = () => {
    clearTimeout(timer)
    timer = undefined
    queued.clear()
  }
  return {post, stop, failures, get posted() {
    return posted
  }}
}

/**
 * Conversations: user i writes to users i+1, i+2 and i+3 (a ring), so each
 * receives from three people, as someone in three chats at once does.
 */
const CONVERSATIONS_PER_USER = 3
const ringPartners = (users: BenchUser[]) => (from: BenchUser) => {
  const i = users.indexOf(from)
  return Array.from({length: CONVERSATIONS_PER_USER}, (_, k) => users[(i + k + 1) % users.length]!)
}

async function measure(context: ScenarioContext, mode: ReceiveMode, count: number, options: {target?: Target; readReceipts?: boolean; conversations?: boolean} = {}) {
  const quick = context.options.quick
  const warmUpMs = quick ? 1_000 : 3_000
  const runMs = quick ? 4_000 : 20_000
  const target = options.target ?? (await context.target())
  const servers = target.serverUrls.slice(0, 2)
  const users = await usersOn(context, 'tp', count, servers)
  const http = new Http(count * 2 + 16)
  const sender = new MessageSender(http, context.ciphertext)
  const deliveries = new Deliveries()
  const receipts = options.readReceipts ? readReceiptPoster(http, context.ciphertext) : undefined
  const inbound = receivers(mode, http, (user, events, at) => {
    for (const event of events) if (event.type === 'message' && event.id) deliveries.received(event.id, at)
    receipts?.post(user, events)
  })
  try {
    for (const user of users) inbound.start(user)
    await sleep(500)
    const partners = options.conversations ? ringPartners(users) : undefined
    await closedLoop({senders: users, recipients: users, until: performance.now() + warmUpMs, sender, deliveries, partners})

    const before = await cpuSnapshot(servers)
    const lag = loopDelay()
    const receiptsBefore = receipts?.posted ?? 0
    const from = performance.now()
    deliveries.setWindow(from, from + runMs)
    await closedLoop({senders: users, recipients: users, until: from + runMs, sender, deliveries, partners})
    const generatorLoopDelayMs = lag.stop()
    const cpu = cpuBetween(before, await cpuSnapshot(servers))
    const readReceiptsPerSecond = receipts ? Math.round(((receipts.posted - receiptsBefore) / runMs) * 10_000) / 10 : 0
    await until(() => deliveries.outstanding === 0, 10_000)
    const summary = deliveries.summary()
    const perMessage = cpuPerMessage(cpu, summary.windowSeconds, deliveries.deliveredInWindow)
    return {summary, cpu, perMessage, generatorLoopDelayMs, failures: deliveries.failures, receiveFailures: inbound.failures, readReceiptsPerSecond, receiptFailures: receipts?.failures.toJSON() ?? {}}
  } finally {
    receipts?.stop()
    await inbound.stop()
    await http.close()
  }
}
