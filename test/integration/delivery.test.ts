import {expect} from 'chai'
import type {DataSource} from 'typeorm'

import type {RunningChatServer} from '../../server/main.js'
import type {RunningSuperserver} from '../../superserver/main.js'
import {createDataSource} from '../../storage/data-source.js'
import {fakeCiphertext, poll, registerAndLogin, send, type TestUser, uniqueName} from '../helpers/api.js'
import {CLUSTER_AUTH, CLUSTER_SECRET, startTestServer, startTestSuperserver, waitForHealthy} from '../helpers/cluster.js'
import {http} from '../helpers/http.js'
import {eventually} from '../helpers/processes.js'

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Parks a poll for `user` on its server, sends to them from `from`, and returns how long the poll took to answer. */
async function wakeTime(from: TestUser, to: TestUser): Promise<number> {
  const head = (await poll(to, 0, 0)).body
  const since = head.events.length ? head.next : 0
  const waiting = poll(to, since, 10_000)
  await sleep(150) // the poll is parked (and its presence recorded)
  const sentAt = Date.now()
  expect((await send(from, to.username, fakeCiphertext('wake'))).status).to.equal(201)
  const answer = await waiting
  expect(answer.body.events, 'the poll answered with the message').to.have.length(1)
  return Date.now() - sentAt
}

const pushCount = async (server: RunningChatServer, result: string): Promise<number> => {
  const text = (await http('GET', `${server.url}/metrics`, {headers: CLUSTER_AUTH})).body as string
  const line = text.split('\n').find((l) => l.startsWith(`fastchat_server_peer_pushes_total{result="${result}"}`))
  return line ? Number(line.split(' ')[1]) : 0
}

describe('delivery across chat servers', () => {
  let db: DataSource
  let superserver: RunningSuperserver
  const started: RunningChatServer[] = []

  const cluster = async (env: NodeJS.ProcessEnv) => {
    const servers = await Promise.all([0, 1, 2].map(() => startTestServer(superserver.url, env)))
    started.push(...servers)
    return servers
  }

  before(async () => {
    db = await createDataSource({url: process.env.DATABASE_URL!}).initialize()
    superserver = await startTestSuperserver()
  })
  after(async () => {
    await Promise.all(started.map((server) => server.close()))
    await superserver.close()
    await db.destroy()
  })

  it('wakes a poll on server C from a send on server A by peer push alone (re-check off)', async () => {
    const [a, , c] = await cluster({FASTCHAT_RECHECK_MS: '0'})
    const alice = await registerAndLogin(a!.url, uniqueName('alice'))
    const bob = await registerAndLogin(c!.url, uniqueName('bob'))
    await poll(bob, 0, 0) // records where bob listens (written a moment later, batched)
    const where = async () =>
      (await db.query('SELECT server_url FROM presence p JOIN users u ON u.id = p.user_id WHERE u.username = $1', [bob.username])).map(
        (r: {server_url: string}) => r.server_url,
      )
    await eventually(async () => (await where()).length > 0, 'bob\'s presence to be recorded')
    expect(await where()).to.deep.equal([c!.url])
    const before = await pushCount(a!, 'ok')
    for (let i = 0; i < 5; i++) expect(await wakeTime(alice, bob)).to.be.lessThan(1_000)
    expect(await pushCount(a!, 'ok')).to.be.greaterThanOrEqual(before + 5)
  })

  it('still delivers within a second with peer push off (the re-check alone)', async () => {
    const [a, , c] = await cluster({FASTCHAT_PEER_PUSH: 'off'})
    const alice = await registerAndLogin(a!.url, uniqueName('alice'))
    const bob = await registerAndLogin(c!.url, uniqueName('bob'))
    for (let i = 0; i < 5; i++) expect(await wakeTime(alice, bob)).to.be.lessThan(1_000)
    expect(await pushCount(a!, 'ok')).to.equal(0)
    // Presence is still recorded (`fastchat who` reads it), though no peer reads it to push.
    const rows = async () => (await db.query('SELECT 1 FROM presence p JOIN users u ON u.id = p.user_id WHERE u.username = $1', [bob.username])) as unknown[]
    await eventually(async () => (await rows()).length === 1, "bob's presence to be recorded with peer push off")
  })

  it('never answers a poll that will not wait from memory: without any push, a message from another server is there', async () => {
    const [a, , c] = await cluster({FASTCHAT_PEER_PUSH: 'off', FASTCHAT_RECHECK_MS: '0'})
    const alice = await registerAndLogin(a!.url, uniqueName('alice'))
    const bob = await registerAndLogin(c!.url, uniqueName('bob'))
    expect((await poll(bob, 0, 0)).body.events).to.deep.equal([]) // c has read bob's empty stream
    expect((await send(alice, bob.username, fakeCiphertext('unannounced'))).status).to.equal(201)
    expect((await poll(bob, 0, 0)).body.events, 'the second poll read the stream again').to.have.length(1)
  })

  it('loses only latency when every push is lost: a poll still wakes through the re-check', async () => {
    const [a, , c] = await cluster({})
    const alice = await registerAndLogin(a!.url, uniqueName('alice'))
    const bob = await registerAndLogin(c!.url, uniqueName('bob'))
    await poll(bob, 0, 0)
    const presence = async () => db.query('SELECT 1 FROM presence WHERE user_id = (SELECT id FROM users WHERE username = $1)', [bob.username])
    await eventually(async () => (await presence()).length === 1, 'bob\'s presence to be recorded')
    // Point bob's presence at a server that is not there: every push to it fails.
    await db.query(
      `UPDATE presence SET server_url = 'http://127.0.0.1:9' WHERE user_id = (SELECT id FROM users WHERE username = $1)`,
      [bob.username],
    )
    const waiting = poll(bob, 0, 10_000)
    await sleep(100)
    // c's recorder believes it wrote bob's presence recently, so the wrong row stays.
    const sentAt = Date.now()
    expect((await send(alice, bob.username, fakeCiphertext('via notify'))).status).to.equal(201)
    expect((await waiting).body.events).to.have.length(1)
    expect(Date.now() - sentAt).to.be.lessThan(1_000)
    await eventually(async () => (await pushCount(a!, 'failed')) >= 1, 'the push to the dead address to have failed')
  })

  it('refuses wake-ups without the cluster secret and validates them', async () => {
    const [a] = await cluster({})
    const anonymous = await http('POST', `${a!.url}/v1/cluster/wake`, {json: {users: ['1']}})
    expect(anonymous.status).to.equal(401)
    const wrong = await http('POST', `${a!.url}/v1/cluster/wake`, {json: {users: ['1']}, headers: {authorization: 'Bearer nope'}})
    expect(wrong.status).to.equal(401)
    const bad = await http('POST', `${a!.url}/v1/cluster/wake`, {json: {users: ['x']}, headers: {authorization: `Bearer ${CLUSTER_SECRET}`}})
    expect(bad.status).to.equal(400)
    const ok = await http('POST', `${a!.url}/v1/cluster/wake`, {json: {users: ['1']}, headers: {authorization: `Bearer ${CLUSTER_SECRET}`}})
    expect(ok.status).to.equal(204)
  })

  it('shows each server\'s open polls and recent throughput on the superserver', async () => {
    const servers = await cluster({})
    await waitForHealthy(superserver.url, started.map((s) => s.url))
    const alice = await registerAndLogin(servers[0]!.url, uniqueName('alice'))
    const bob = await registerAndLogin(servers[1]!.url, uniqueName('bob'))
    for (let i = 0; i < 20; i++) await send(alice, bob.username, fakeCiphertext(i))
    const parked = ['phone', 'laptop'].map((client) =>
      http('GET', `${servers[1]!.url}/v1/events?since=20&timeout=3000`, {headers: {...bob.auth, 'x-fastchat-client': client}}),
    )
    await eventually(async () => {
      const {body} = await http('GET', `${superserver.url}/v1/servers`, {headers: CLUSTER_AUTH})
      const b = body.servers.find((s: {url: string}) => s.url === servers[1]!.url)
      const a = body.servers.find((s: {url: string}) => s.url === servers[0]!.url)
      return b?.openPolls === 2 && a?.eventsCommittedPerSecond > 0
    }, 'the registry to show 2 open polls on b and a\'s throughput')
    await Promise.all(parked)
  })
})
