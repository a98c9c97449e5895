import {performance} from 'node:perf_hooks'

import {registryView} from '../lib/cluster.js'
import {joinAll, skipToEnd} from '../lib/groups.js'
import {type BenchUser, Http, MessageSender, receivers, sleep, until} from '../lib/http.js'
import {sample, scrape, SERVER_RSS} from '../lib/metrics.js'
import type {ReceiveMode} from '../lib/options.js'
import {usersOn, tooManyUsers, type Scenario, type ScenarioContext, type ScenarioOutput} from '../lib/scenario.js'
import {mib, percentiles, round, table} from '../lib/stats.js'
import {Deliveries} from '../lib/traffic.js'

/**
 * 3. Idle polls and idle streams: N users each hold one long-poll (or one
 * event stream: once per mode, each on a freshly started cluster) open on one
 * chat server. Resident memory of that server before and with them open (from
 * its /metrics), then one message to each of them, sent through the other
 * chat server: how long until every one has delivered its message; then one
 * broadcast to all of them at once.
 */
export const idlePolls: Scenario = async (context) => {
  const count = context.options.quick ? 500 : 10_000
  const skip = await tooManyUsers(context, (count + 1) * context.options.modes.length)
  if (skip) return {skipped: skip}
  const texts: string[] = []
  const modes = []
  for (const mode of context.options.modes) {
    const result = await measure(context, mode, count)
    if ('skipped' in result) return result
    texts.push(`-- ${mode === 'poll' ? 'idle long-polls' : 'idle event streams'} --`, result.text)
    modes.push({mode, ...(result.data as object)})
  }
  return {text: texts.join('\n'), data: {modes}}
}

async function measure(context: ScenarioContext, mode: ReceiveMode, count: number): Promise<ScenarioOutput> {
  const what = mode === 'poll' ? 'polls' : 'streams'
  /** Polls are opened in batches, so the server's accept backlog (511) never overflows. */
  const openBatch = 500
  const sendConcurrency = 64

  // A fresh cluster: the servers' memory after the other scenarios' traffic says more about the garbage collector than about polls.
  const target = await context.freshTarget()
  const [pollServer, otherServer] = [target.serverUrls[0]!, target.serverUrls[1] ?? target.serverUrls[0]!]
  const users = await usersOn(context, 'idle', count, [pollServer])
  const [from] = await usersOn(context, 'idles', 1, [otherServer])
  const http = new Http(count + sendConcurrency + 16)
  const sender = new MessageSender(http, context.ciphertext)
  const deliveries = new Deliveries()
  let lastReceived = 0
  /** Every message receipt by id, for the broadcast phase (a member may have it before the sender has the id). */
  const receipts = new Map<string, number[]>()
  let broadcasting = false
  const pollers = receivers(
    mode,
    http,
    (_user, events, at) => {
      for (const event of events) {
        if (event.type !== 'message' || !event.id) continue
        if (broadcasting) {
          let times = receipts.get(event.id)
          if (!times) receipts.set(event.id, (times = []))
          times.push(at)
          continue
        }
        deliveries.received(event.id, at)
        lastReceived = at
      }
    },
    {timeoutMs: 60_000},
  )
  try {
    // The broadcast's groups (groups hold 1,000 members: the sender and 999 of
    // them). Made now, before the polls open: each member joins (an
    // invitation is not membership), and each join is an event to every
    // member so far, which would wake the polls; their cursors then skip it.
    const groupSize = 999
    const groups: {id: string; members: BenchUser[]; epoch: number}[] = []
    for (let i = 0; i < users.length; i += groupSize) {
      const members = users.slice(i, i + groupSize)
      const created = await http.call<{id: string}>('POST', `${otherServer}/v1/groups`, {
        token: from!.token,
        body: JSON.stringify({name: `idle ${i}`, members: members.map((m) => m.username)}),
      })
      if (created.status !== 201) throw new Error(`group create answered ${created.status}`)
      groups.push({id: created.body.id, members, epoch: await joinAll(http, created.body.id, members)})
    }
    await skipToEnd(http, users)

    const before = await serverState(target.superserverUrl, pollServer, mode)
    const openStart = performance.now()
    for (let i = 0; i < users.length; i += openBatch) {
      for (const user of users.slice(i, i + openBatch)) pollers.start(user)
      await sleep(50)
    }
    // The superserver hears each server's open polls and streams with its heartbeat (every ~2 s).
    let open = 0
    const openDeadline = performance.now() + 60_000
    while (performance.now() < openDeadline) {
      open = (await serverState(target.superserverUrl, pollServer, mode)).open
      if (open >= count) break
      await sleep(250)
    }
    const openSeconds = round((performance.now() - openStart) / 1000, 1)
    await sleep(1_000)
    const withPolls = await serverState(target.superserverUrl, pollServer, mode)
    // Idle polls answer only at their timeout (60 s), streams never: any answer (or end) before the messages is one that ended early.
    const earlyAnswers = pollers.answers

    // One message to each polling user.
    const start = performance.now()
    deliveries.setWindow(start, Number.POSITIVE_INFINITY)
    let next = 0
    await Promise.all(
      Array.from({length: sendConcurrency}, async () => {
        for (let i = next++; i < users.length; i = next++) await deliveries.send(sender, from!, users[i]!)
      }),
    )
    const lastAcked = performance.now()
    await until(() => deliveries.outstanding === 0, 30_000)
    const latency = deliveries.latency()
    const allMs = round(lastReceived - start, 0)
    const afterLastAckMs = round(Math.max(0, lastReceived - lastAcked), 0)
    // Broadcast: one message to every polling user at once, as group messages to the
    // groups made above, sent together. This is the wake-up itself, not bounded by
    // how fast one client can send 10,000 messages.
    const wrapped = `-----BEGIN PGP MESSAGE-----\n\nbench: the server never reads wrapped keys\n-----END PGP MESSAGE-----\n`
    for (const group of groups) {
      const keys = Object.fromEntries([from!, ...group.members].map((member) => [member.username, wrapped]))
      const put = await http.call('PUT', `${otherServer}/v1/groups/${group.id}/keys/${group.epoch}`, {token: from!.token, body: JSON.stringify({keys})})
      if (put.status !== 204) throw new Error(`key set answered ${put.status}`)
    }
    await sleep(2_000) // the key events woke every poll; they are parked again (a stream just wrote them)
    broadcasting = true
    const broadcastStart = performance.now()
    const sent = await Promise.all(
      groups.map(async (group, i) => {
        const answer = await http.call<{id: string}>('POST', `${otherServer}/v1/messages`, {
          token: from!.token,
          body: JSON.stringify({to: {group: group.id}, epoch: group.epoch, kind: 'text', ciphertext: context.ciphertext}),
          headers: {'idempotency-key': `bench-idle-broadcast-${i}`},
        })
        if (answer.status !== 201) throw new Error(`group send answered ${answer.status}`)
        return {id: answer.body.id, members: group.members.length}
      }),
    )
    const broadcastAcked = performance.now()
    await until(() => sent.every((m) => (receipts.get(m.id)?.length ?? 0) >= m.members), 30_000)
    const broadcastTimes = sent.flatMap((m) => (receipts.get(m.id) ?? []).map((t) => t - broadcastStart))
    const broadcast = percentiles(broadcastTimes)
    const broadcastMissing = sent.reduce((sum, m) => sum + Math.max(0, m.members - (receipts.get(m.id)?.length ?? 0)), 0)

    const rssDelta = withPolls.rss - before.rss
    const text = [
      table([
        [what, 'open s', 'RSS before MiB', `RSS with ${what} MiB`, `KiB/${mode}`, 'send all s', 'all delivered s', 'after last 201 ms', 'p50 ms', 'p99 ms', 'max ms'],
        [
          count,
          openSeconds,
          mib(before.rss),
          mib(withPolls.rss),
          round(rssDelta / 1024 / count, 1),
          round((lastAcked - start) / 1000, 2),
          round(allMs / 1000, 2),
          afterLastAckMs,
          latency.p50,
          latency.p99,
          latency.max,
        ],
      ]),
      table([
        ['broadcast: group messages', 'members each', '201s after ms', 'woken', 'p50 ms', 'p99 ms', 'all woken ms', 'missing'],
        [groups.length, groupSize, round(broadcastAcked - broadcastStart, 0), broadcastTimes.length, broadcast.p50, broadcast.p99, broadcast.max, broadcastMissing],
      ]),
      `1:1 phase: one message to each of the ${what}, sent one by one through the other server; broadcast phase: one message to all of them at once, as ${groups.length} group messages sent together. ` +
        `open ${what} reported by the superserver: ${withPolls.open}; messages sent through ${otherServer === pollServer ? 'the same' : 'the other'} chat server, ${sendConcurrency} in flight; ` +
        `delivered ${deliveries.delivered}/${count}, missing ${deliveries.outstanding}; ${mode === 'poll' ? 'polls answered' : 'streams ended'} before any message was sent: ${earlyAnswers}; ` +
        `failures: ${deliveries.failures}; ${mode} failures: ${pollers.failures}`,
    ].join('\n')
    return {
      text,
      data: {
        [what]: count,
        openSeconds,
        rssBeforeBytes: before.rss,
        rssWithOpenBytes: withPolls.rss,
        openReported: withPolls.open,
        earlyAnswers,
        sendConcurrency,
        sendAllSeconds: round((lastAcked - start) / 1000, 3),
        allDeliveredMs: allMs,
        afterLastAckMs,
        latencyMs: latency,
        delivered: deliveries.delivered,
        missing: deliveries.outstanding,
        broadcast: {groups: groups.length, groupSize, ackedMs: round(broadcastAcked - broadcastStart, 0), woken: broadcastTimes.length, latencyMs: broadcast, missing: broadcastMissing},
        failures: deliveries.failures.toJSON(),
        receiveFailures: pollers.failures.toJSON(),
      },
    }
  } finally {
    await pollers.stop()
    await http.close()
  }
}

/** The server's resident memory, and its open polls or streams as the superserver last heard them. */
async function serverState(superserverUrl: string, server: string, mode: ReceiveMode): Promise<{rss: number; open: number}> {
  const [metrics, registry] = await Promise.all([scrape(server), registryView(superserverUrl)])
  const entry = registry.get(server)
  return {rss: sample(metrics, SERVER_RSS), open: (mode === 'poll' ? entry?.openPolls : entry?.openStreams) ?? 0}
}
