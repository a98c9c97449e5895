import {createServer as createHttpServer} from 'node:http'
import {createServer} from 'node:net'
import {once} from 'node:events'
import {mock} from 'node:test'

import {expect} from 'chai'
import pino from 'pino'
import {Registry} from 'prom-client'

import {PeerPush} from '../../server/delivery/peers.js'
import type {PresenceRepository} from '../../storage/repositories/presence.repository.js'
import {eventually} from '../helpers/processes.js'

/**
 * A lost peer push costs its recipients the re-check's latency (docs/architecture.md); an operator
 * must hear of it (a wrong --url, a cut between servers), counted per peer and named in a warning,
 * but not once per message.
 */
describe('peer push failures', () => {
  const lines: {level: number; msg: string; peer?: string; lostSinceLastWarning?: number}[] = []
  const logger = pino({level: 'info'}, {write: (line: string) => void lines.push(JSON.parse(line))})
  let closed: string
  let push: PeerPush | undefined

  before(async () => {
    // A port that was just free: connections to it are refused at once.
    const server = createServer().listen(0, '127.0.0.1')
    await once(server, 'listening')
    closed = `http://127.0.0.1:${(server.address() as {port: number}).port}`
    server.close()
  })
  afterEach(async () => {
    await push?.stop()
    lines.length = 0
  })

  it('counts every lost push by peer and names the peer in one warning for a run of failures', async () => {
    const presence = {peersOf: async (ids: string[]) => new Map([[closed, ids]])} as unknown as PresenceRepository
    const registry = new Registry()
    push = new PeerPush(presence, 'http://127.0.0.1:1', {secret: 'a-cluster-secret-of-16+', timeoutMs: 500}, logger, registry)
    const lost = async () => {
      const metric = (await registry.getMetricsAsJSON()).find((m) => m.name === 'fastchat_server_peer_push_failures_total')
      return metric?.values.find((v) => v.labels.peer === closed)?.value ?? 0
    }
    for (let i = 1; i <= 20; i++) {
      push.push([`user-${i}`], [])
      await eventually(async () => (await lost()) >= i, `lost push ${i} to be counted`)
    }
    const warnings = lines.filter((line) => line.level === 40)
    expect(warnings).to.have.length(1)
    expect(warnings[0]).to.include({peer: closed, lostSinceLastWarning: 0})
    expect(warnings[0]!.msg).to.match(/peer push failed/)
  })

  it("waits for a peer's append up to its window, and a peer too slow to append still gets pushes at once", async () => {
    const paths: string[] = []
    // The peer answers appends after `appendAnswerMs` (its receipts' window), wake-ups at once.
    let appendAnswerMs = 300
    const peer = createHttpServer((req, res) => {
      req.resume()
      req.on('end', () => {
        paths.push(req.url!)
        if (req.url === '/v1/cluster/events') setTimeout(() => res.writeHead(204).end(), appendAnswerMs)
        else res.writeHead(204).end()
      })
    }).listen(0, '127.0.0.1')
    await once(peer, 'listening')
    const url = `http://127.0.0.1:${(peer.address() as {port: number}).port}`
    const presence = {peersOf: async (ids: string[]) => new Map([[url, ids]])} as unknown as PresenceRepository
    try {
      push = new PeerPush(presence, 'http://127.0.0.1:1', {secret: 'a-cluster-secret-of-16+', timeoutMs: 200, appendWaitMs: 400}, logger, new Registry())
      const receipt = {recipientId: '7', type: 'receipt.read', payload: {receipts: []}}
      // Longer than the push timeout, within it and the window: taken.
      await push.append(url, [receipt])
      // Past both: given up, and appends back off, but pushes go on.
      appendAnswerMs = 1_000
      let failed = false
      await push.append(url, [receipt]).catch(() => (failed = true))
      expect(failed).to.equal(true)
      push.push(['7'], [])
      await eventually(async () => paths.includes('/v1/cluster/wake'), 'the wake-up to reach the peer')
      let refused = false
      await push.append(url, [receipt]).catch(() => (refused = true))
      expect(refused, 'appends back off').to.equal(true)
      expect(paths.filter((path) => path === '/v1/cluster/events')).to.have.length(2)
    } finally {
      await push?.stop()
      push = undefined
      peer.closeAllConnections()
      peer.close()
    }
  })

  it('looks again soon for a recipient found listening nowhere else, so one who just opened a listen elsewhere is pushed to, not left to the re-check', async () => {
    const woken: string[] = []
    const peer = createHttpServer((req, res) => {
      let body = ''
      req.on('data', (chunk: Buffer) => (body += chunk.toString()))
      req.on('end', () => {
        woken.push(body)
        res.writeHead(204).end()
      })
    }).listen(0, '127.0.0.1')
    await once(peer, 'listening')
    const url = `http://127.0.0.1:${(peer.address() as {port: number}).port}`
    let listening = false
    let lookups = 0
    const presence = {
      peersOf: async (ids: string[]) => {
        lookups++
        return listening ? new Map([[url, ids]]) : new Map()
      },
    } as unknown as PresenceRepository
    mock.timers.enable({apis: ['Date'], now: 1_000_000})
    try {
      push = new PeerPush(presence, 'http://127.0.0.1:1', {secret: 'a-cluster-secret-of-16+', timeoutMs: 500}, logger, new Registry())
      push.push(['42'], [])
      await eventually(async () => lookups === 1, 'the first lookup')
      expect(woken).to.deep.equal([])
      // bob opens a listen on the peer; 60 ms later a message to him is pushed there (before: not for a second).
      listening = true
      mock.timers.tick(60)
      push.push(['42'], [])
      await eventually(async () => woken.length === 1, 'the push to the server where bob now listens')
      expect(lookups).to.equal(2)
      // Where someone listens is reused for a second: no lookup for the next message.
      mock.timers.tick(500)
      push.push(['42'], [])
      await eventually(async () => woken.length === 2, 'the second push')
      expect(lookups).to.equal(2)
    } finally {
      mock.timers.reset()
      peer.closeAllConnections()
      peer.close()
    }
  })
})
