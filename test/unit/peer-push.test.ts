import {createServer} from 'node:net'
import {once} from 'node:events'

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
})
