import {performance} from 'node:perf_hooks'

import {FastChatClient, isMessage, MemoryStore} from '../../client/index.js'
import {closePeerConnections} from '../../client/peer.js'
import {cpuBetween, cpuColumns, CPU_HEADERS, cpuPerMessage, cpuSnapshot} from '../lib/metrics.js'
import type {Scenario} from '../lib/scenario.js'
import {percentiles, round, table} from '../lib/stats.js'
import {BENCH_PASSWORD, runTag} from '../lib/users.js'

const PASSPHRASE = 'bench passphrase'

/**
 * 10. The direct path (issue 17): send→receive latency between two clients
 * (the client library, both in this process, each with its own profile in
 * memory) over the server path, then over the direct path, on the same
 * cluster. One message at a time: alice sends, bob's `messages()` hands it
 * out, then the next. Server path: bob follows his stream (SSE), alice has no
 * offer of his. Direct path: bob's listen opens a peer endpoint on 127.0.0.1
 * and offers it; alice's sends post each message to it beside the commit
 * (which still happens: the 201 is measured too), and bob shows the first copy.
 * CPU: chat servers + PostgreSQL per message, and this process (both clients:
 * encryption, signing, decryption, verification) apart.
 */
export const peer: Scenario = async (context) => {
  const count = context.options.quick ? 30 : 300
  const target = await context.target()
  const make = (name: string) =>
    FastChatClient.register({
      store: new MemoryStore(),
      username: `b${runTag}_${name}`,
      password: BENCH_PASSWORD,
      superserver: target.superserverUrl,
      passphrase: async () => PASSPHRASE,
      newPassphrase: async () => PASSPHRASE,
    })
  const alice = await make('peera')
  const bob = await make('peerb')
  // Each pins the other (offers go to pinned contacts): alice by writing, bob by reading.
  await alice.send(bob.username, 'hello')
  for await (const _ of bob.messages({follow: false})) void _

  const rows: Array<Array<string | number>> = [['path', 'messages', 'p50 ms', 'p95 ms', 'p99 ms', 'max ms', '201 p50 ms', 'came directly', ...CPU_HEADERS]]
  const data: Record<string, unknown> = {}
  for (const path of ['server', 'direct'] as const) {
    const stop = new AbortController()
    const arrived = new Map<string, {at: number; via?: string}>()
    let wake: (() => void) | undefined
    const reader = (async () => {
      const options = {signal: stop.signal, transport: 'stream' as const, ...(path === 'direct' ? {peer: {host: '127.0.0.1'}} : {})}
      for await (const item of bob.messages(options)) {
        if (!isMessage(item) || item.kind !== 'text' || !item.text?.startsWith('bench ')) continue
        arrived.set(item.text, {at: performance.now(), ...(item.via ? {via: item.via} : {})})
        wake?.()
      }
    })().catch(() => undefined)
    if (path === 'direct') {
      // bob's endpoint is offered once his listen starts; alice takes the offer in from her stream.
      const deadline = Date.now() + 15_000
      while (!(await alice.peers.usable(bob.username)) && Date.now() < deadline) for await (const _ of alice.messages({follow: false, waitMs: 500})) void _
      if (!(await alice.peers.usable(bob.username))) throw new Error('no peer offer from bob within 15 s')
    }
    // One message first, not measured: bob's stream (and alice's connections) open.
    const warm = `bench ${path} warm-up`
    const warmed = new Promise<void>((resolve) => (wake = () => arrived.has(warm) && resolve()))
    await alice.send(bob.username, warm)
    await Promise.race([warmed, new Promise((resolve) => setTimeout(resolve, 10_000))])
    const latencies: number[] = []
    const commits: number[] = []
    const before = await cpuSnapshot(target.serverUrls)
    const started = performance.now()
    for (let i = 0; i < count; i++) {
      const text = `bench ${path} ${i}`
      const got = new Promise<void>((resolve) => (wake = () => arrived.has(text) && resolve()))
      const at = performance.now()
      await alice.send(bob.username, text)
      commits.push(performance.now() - at)
      await Promise.race([got, new Promise((resolve) => setTimeout(resolve, 10_000))])
      const arrival = arrived.get(text)
      if (arrival) latencies.push(arrival.at - at)
    }
    const seconds = (performance.now() - started) / 1000
    const cpu = cpuBetween(before, await cpuSnapshot(target.serverUrls))
    const perMessage = cpuPerMessage(cpu, seconds, latencies.length)
    stop.abort()
    await reader
    const direct = [...arrived.values()].filter((arrival) => arrival.via === 'direct').length
    const p = percentiles(latencies)
    const commit = percentiles(commits)
    rows.push([path, latencies.length, p.p50, p.p95, p.p99, p.max, commit.p50, path === 'direct' ? `${direct} of ${arrived.size}` : '-', ...cpuColumns(cpu, perMessage)])
    data[path] = {latencyMs: p, commitMs: commit, cameDirectly: direct, received: arrived.size, sent: count, cpuMsPerMessage: perMessage}
  }
  await closePeerConnections()
  const server = data.server as {latencyMs: {p50: number}}
  const direct = data.direct as {latencyMs: {p50: number}}
  return {
    text: [
      table(rows),
      `send start → bob's messages() hands it out, one message at a time; 201: send start → the server's answer (the direct path waits for the endpoint's answer first, at most ${100} ms)`,
      `direct / server p50: × ${round(direct.latencyMs.p50 / server.latencyMs.p50)}; gen: both clients, in this process (encrypt, sign, decrypt, verify)`,
    ].join('\n'),
    data,
  }
}
