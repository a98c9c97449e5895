import {once} from 'node:events'
import {performance} from 'node:perf_hooks'
import {Worker} from 'node:worker_threads'

import {FastChatClient, MemoryStore} from '../../client/index.js'
import {closePeerConnections, DIRECT_HEAD_START_MS} from '../../client/peer.js'
import {cpuBetween, cpuColumns, CPU_HEADERS, cpuPerMessage, cpuSnapshot} from '../lib/metrics.js'
import type {Scenario} from '../lib/scenario.js'
import {percentiles, round, table} from '../lib/stats.js'
import {BENCH_PASSWORD, runTag} from '../lib/users.js'

const PASSPHRASE = 'bench passphrase'
/** The most one message may take to arrive before it counts as lost. */
const ARRIVAL_TIMEOUT_MS = 10_000

type FromReceiver =
  | {type: 'ready'; username: string}
  | {type: 'done'}
  | {type: 'listening'; urls: string[]}
  | {type: 'message'; text: string; at: number; via?: string}
  | {type: 'error'; message: string}

/**
 * 10. The direct path (issue 17): send→receive latency between two clients
 * over the server path, then over the direct path, on the same cluster.
 * alice (the client library, in this thread) sends one message at a time;
 * bob (the library too, in a worker thread of its own: ./peer-receiver.ts)
 * hands each out, then alice sends the next. Server path: bob follows his
 * stream (SSE) and alice has no offer of his. Direct path: bob's `messages()`
 * opens a peer endpoint on 127.0.0.1 and offers it; alice posts each message
 * to it beside the commit (which still happens: its 201 is measured too), and
 * bob shows the first copy. CPU: chat servers + PostgreSQL per message, and
 * this process (both clients: encryption, signing, decryption, verification) apart.
 */
export const peer: Scenario = async (context) => {
  const count = context.options.quick ? 30 : 300
  const target = await context.target()
  const alice = await FastChatClient.register({
    store: new MemoryStore(),
    username: `b${runTag}_peera`,
    password: BENCH_PASSWORD,
    superserver: target.superserverUrl,
    passphrase: async () => PASSPHRASE,
    newPassphrase: async () => PASSPHRASE,
  })
  // The worker loads TypeScript as this process does: tsx's hooks are registered per thread, before the receiver is imported.
  const receiver = new URL('./peer-receiver.ts', import.meta.url).href
  const worker = new Worker(`import('tsx/esm/api').then(({register}) => { register(); return import(${JSON.stringify(receiver)}) })`, {
    eval: true,
    workerData: {superserver: target.superserverUrl, username: `b${runTag}_peerb`, password: BENCH_PASSWORD, passphrase: PASSPHRASE},
  })
  const arrived = new Map<string, {at: number; via?: string}>()
  let wake: (() => void) | undefined
  const replies: FromReceiver[] = []
  let replied: (() => void) | undefined
  worker.on('message', (message: FromReceiver) => {
    if (message.type === 'message') {
      arrived.set(message.text, {at: message.at, ...(message.via ? {via: message.via} : {})})
      wake?.()
    } else {
      replies.push(message)
      replied?.()
    }
  })
  const failed = once(worker, 'error').then(([error]) => {
    throw error as Error
  })
  /** The receiver's next answer other than a message. */
  const reply = async (): Promise<FromReceiver> => {
    while (replies.length === 0) await Promise.race([new Promise<void>((resolve) => (replied = resolve)), failed])
    const answer = replies.shift()!
    if (answer.type === 'error') throw new Error(`receiver: ${answer.message}`)
    return answer
  }
  const now = () => performance.timeOrigin + performance.now()
  /** Resolves when bob has handed `text` out, or after ARRIVAL_TIMEOUT_MS. */
  const arrival = (text: string) =>
    Promise.race([new Promise<void>((resolve) => (wake = () => arrived.has(text) && resolve())), new Promise((resolve) => setTimeout(resolve, ARRIVAL_TIMEOUT_MS))])

  try {
    const {username: bob} = (await reply()) as {username: string}
    // Each pins the other (offers go to pinned contacts): alice by writing, bob by reading.
    await alice.send(bob, 'hello')
    worker.postMessage({cmd: 'inbox'})
    await reply()

    const slow: string[] = []
    const rows: Array<Array<string | number>> = [['path', 'messages', 'p50 ms', 'p95 ms', 'p99 ms', 'max ms', '201 p50 ms', 'came directly', ...CPU_HEADERS]]
    const data: Record<string, unknown> = {}
    for (const path of ['server', 'direct'] as const) {
      arrived.clear()
      worker.postMessage({cmd: 'listen', peer: path === 'direct'})
      await reply()
      if (path === 'direct') {
        // bob's endpoint is offered as his messages() starts; alice takes the offer in from her stream.
        const deadline = Date.now() + 15_000
        while (!(await alice.peers.usable(bob)) && Date.now() < deadline) for await (const _ of alice.messages({follow: false, waitMs: 500})) void _
        if (!(await alice.peers.usable(bob))) throw new Error('no peer offer from bob within 15 s')
      }
      // One message first, not measured: bob's stream (and alice's connections) open.
      const warm = `bench ${path} warm-up`
      const warmed = arrival(warm)
      await alice.send(bob, warm)
      await warmed
      const latencies: number[] = []
      const commits: number[] = []
      const before = await cpuSnapshot(target.serverUrls)
      const started = performance.now()
      for (let i = 0; i < count; i++) {
        const text = `bench ${path} ${i}`
        const got = arrival(text)
        const at = now()
        await alice.send(bob, text)
        commits.push(now() - at)
        await got
        const came = arrived.get(text)
        if (came) latencies.push(came.at - at)
        if (came && came.at - at > 100) slow.push(`${path} #${i}: ${Math.round(came.at - at)} ms`)
      }
      const seconds = (performance.now() - started) / 1000
      const cpu = cpuBetween(before, await cpuSnapshot(target.serverUrls))
      const perMessage = cpuPerMessage(cpu, seconds, latencies.length)
      worker.postMessage({cmd: 'stop'})
      await reply()
      const direct = [...arrived.values()].filter((came) => came.via === 'direct').length
      const p = percentiles(latencies)
      const commit = percentiles(commits)
      rows.push([path, latencies.length, p.p50, p.p95, p.p99, p.max, commit.p50, path === 'direct' ? `${direct} of ${arrived.size}` : '-', ...cpuColumns(cpu, perMessage)])
      data[path] = {latencyMs: p, commitMs: commit, cameDirectly: direct, received: arrived.size, sent: count, cpuMsPerMessage: perMessage}
    }
    const server = data.server as {latencyMs: {p50: number}}
    const direct = data.direct as {latencyMs: {p50: number}}
    return {
      text: [
        table(rows),
        `send start (alice) → bob's messages() hands it out (a worker thread), one message at a time; 201: send start → the server's answer (on the direct path the commit waits for the endpoint's answer first, at most ${DIRECT_HEAD_START_MS} ms)`,
        `direct / server p50: × ${round(direct.latencyMs.p50 / server.latencyMs.p50)}; gen: both clients (this process, both threads): encrypt, sign, decrypt, verify`,
        ...(slow.length > 0 ? [`over 100 ms: ${slow.join(', ')}`] : []),
      ].join('\n'),
      data: {...data, slow},
    }
  } finally {
    await worker.terminate()
    await closePeerConnections()
  }
}
