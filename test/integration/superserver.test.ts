import {expect} from 'chai'

import type {RunningChatServer} from '../../server/main.js'
import type {RunningSuperserver} from '../../superserver/main.js'
import {CLUSTER_AUTH, CLUSTER_SECRET, startTestServer, startTestSuperserver, testEnv, waitForHealthy} from '../helpers/cluster.js'
import {http} from '../helpers/http.js'
import {eventually, startCli} from '../helpers/processes.js'
import type {DataSource} from 'typeorm'

import {createDataSource} from '../../storage/data-source.js'
import {truncateAll} from '../helpers/database.js'

const assign = async (superserverUrl: string): Promise<string> => {
  const {status, body} = await http<{server: string}>('GET', `${superserverUrl}/v1/assign`)
  expect(status).to.equal(200)
  return body.server
}

const expectProblem = (answer: {status: number; headers: Headers; body: any}, status: number, code: string) => {
  expect(answer.status, JSON.stringify(answer.body)).to.equal(status)
  expect(answer.headers.get('content-type')).to.match(/^application\/problem\+json/)
  expect(answer.body).to.include({status, code})
  expect(answer.body.type).to.be.a('string')
  expect(answer.body.title).to.be.a('string')
  expect(answer.body.detail).to.be.a('string')
  expect(JSON.stringify(answer.body)).not.to.match(/at .*\.(ts|js):\d+/) // no stack trace
}

describe('superserver', () => {
  let db: DataSource
  let superservers: RunningSuperserver[] = []
  let servers: RunningChatServer[] = []

  before(async () => {
    // DATABASE_URL is set by the global setup, after this file is loaded.
    db = await createDataSource({url: process.env.DATABASE_URL!}).initialize()
  })
  after(() => db.destroy())
  beforeEach(() => truncateAll(db))
  afterEach(async () => {
    await Promise.all(servers.map((s) => s.close()))
    await Promise.all(superservers.map((s) => s.close()))
    servers = []
    superservers = []
  })

  const superserver = async () => {
    const s = await startTestSuperserver()
    superservers.push(s)
    return s
  }
  const server = async (superserverUrl: string) => {
    const s = await startTestServer(superserverUrl)
    servers.push(s)
    return s
  }

  it('answers 503 with a problem when no server is healthy', async () => {
    const ss = await superserver()
    const answer = await http('GET', `${ss.url}/v1/assign`)
    expectProblem(answer, 503, 'FC_NO_SERVER')
    expect(answer.headers.get('retry-after')).to.equal('1')
  })

  it('assigns round-robin over three healthy servers', async () => {
    const ss = await superserver()
    const urls = [(await server(ss.url)).url, (await server(ss.url)).url, (await server(ss.url)).url]
    await waitForHealthy(ss.url, urls)

    const got: string[] = []
    for (let i = 0; i < 9; i++) got.push(await assign(ss.url))
    // Each server once per turn of three, in the same order every turn.
    const firstTurn = got.slice(0, 3)
    expect([...firstTurn].sort()).to.deep.equal([...urls].sort())
    expect(got).to.deep.equal([...firstTurn, ...firstTurn, ...firstTurn])
  })

  it('hole 10: lists servers and metrics only to the cluster secret; /v1/assign and /healthz stay public', async () => {
    const ss = await superserver()
    const s = await server(ss.url)
    await waitForHealthy(ss.url, [s.url])
    for (const path of ['/v1/servers', '/metrics']) {
      for (const headers of [{}, {authorization: 'Bearer wrong-secret-but-long-enough'}, {authorization: `Basic ${CLUSTER_SECRET}`}] as Record<string, string>[]) {
        const answer = await http('GET', `${ss.url}${path}`, {headers})
        expectProblem(answer, 401, 'FC_UNAUTHORIZED')
        expect(JSON.stringify(answer.body), path).not.to.include(s.url)
      }
    }
    expect((await http('GET', `${ss.url}/v1/servers`, {headers: CLUSTER_AUTH})).body.servers[0]).to.include({url: s.url})
    expect((await http('GET', `${ss.url}/metrics`, {headers: CLUSTER_AUTH})).body).to.match(/^fastchat_superserver_/m)
    expect(await assign(ss.url)).to.equal(s.url)
    expect((await http('GET', `${ss.url}/healthz`)).status).to.equal(200)
  })

  it('lists servers with their health and heartbeat stats', async () => {
    const ss = await superserver()
    const s = await server(ss.url)
    // Stats arrive with the first heartbeat after registration.
    const body = await eventually(async () => {
      const answer = await http('GET', `${ss.url}/v1/servers`, {headers: CLUSTER_AUTH})
      return answer.body.servers[0]?.openPolls !== undefined && answer.body
    }, 'a heartbeat with stats')
    expect(body.servers).to.have.length(1)
    expect(body.servers[0]).to.include({url: s.url, healthy: true, draining: false, id: s.id})
    expect(body.servers[0].openPolls).to.be.a('number')
    expect(Date.parse(body.servers[0].lastSeen)).to.be.closeTo(Date.now(), 5_000)
  })

  it('shares one registry between two superservers on one database', async () => {
    const a = await superserver()
    const b = await superserver()
    const s1 = await server(a.url)
    const s2 = await server(b.url)
    await waitForHealthy(a.url, [s1.url, s2.url])
    await waitForHealthy(b.url, [s1.url, s2.url])
    // One rotation for both: alternating between them still alternates servers.
    const got = [await assign(a.url), await assign(b.url), await assign(a.url), await assign(b.url)]
    expect(got[0]).to.not.equal(got[1])
    expect(got[2]).to.equal(got[0])
    expect(got[3]).to.equal(got[1])
  })

  it('evicts a chat server killed with SIGKILL and stops assigning it', async function () {
    const ss = await superserver()
    const survivor = await server(ss.url)
    const victim = await startCli(['server', '--port', '0', '--superserver', ss.url], testEnv())
    await waitForHealthy(ss.url, [survivor.url, victim.url])

    expect(await victim.stop('SIGKILL')).to.equal('SIGKILL')
    // Unhealthy after 2.5 missed beats of 100 ms: from then on only the survivor is assigned...
    await waitForHealthy(ss.url, [survivor.url])
    for (let i = 0; i < 4; i++) expect(await assign(ss.url)).to.equal(survivor.url)
    // ...and after 5 missed beats the victim is gone from the registry.
    await eventually(async () => {
      const {body} = await http('GET', `${ss.url}/v1/servers`, {headers: CLUSTER_AUTH})
      return body.servers.length === 1 && body.servers[0].url === survivor.url
    }, 'the killed server to be evicted')
  })

  it('deregisters a chat server stopped with SIGTERM', async () => {
    const ss = await superserver()
    const s = await startCli(['server', '--port', '0', '--superserver', ss.url], testEnv())
    await waitForHealthy(ss.url, [s.url])
    expect(await s.stop('SIGTERM')).to.equal(0)
    const {body} = await http('GET', `${ss.url}/v1/servers`, {headers: CLUSTER_AUTH})
    expect(body.servers).to.deep.equal([])
    expect(s.output()).not.to.match(/error/i)
  })

  it('re-registers a server whose entry was evicted while it was alive', async () => {
    const ss = await superserver()
    const s = await server(ss.url)
    await waitForHealthy(ss.url, [s.url])
    await db.query('DELETE FROM chat_servers')
    await waitForHealthy(ss.url, [s.url])
  })

  describe('registration routes', () => {
    const auth = {authorization: `Bearer ${CLUSTER_SECRET}`}
    let ss: RunningSuperserver
    beforeEach(async () => {
      ss = await superserver()
    })

    it('registers, heartbeats and deregisters with the cluster secret', async () => {
      const reg = await http('POST', `${ss.url}/v1/servers`, {json: {url: 'http://127.0.0.1:9'}, headers: auth})
      expect(reg.status).to.equal(201)
      expect(reg.body.heartbeatMs).to.equal(100)
      const beat = await http('PUT', `${ss.url}/v1/servers/${reg.body.id}/heartbeat`, {json: {stats: {openPolls: 3}}, headers: auth})
      expect(beat.status).to.equal(204)
      expect((await http('GET', `${ss.url}/v1/servers`, {headers: CLUSTER_AUTH})).body.servers[0]).to.include({openPolls: 3})
      expect((await http('DELETE', `${ss.url}/v1/servers/${reg.body.id}`, {headers: auth})).status).to.equal(204)
      expect((await http('GET', `${ss.url}/v1/servers`, {headers: CLUSTER_AUTH})).body.servers).to.deep.equal([])
    })

    it('rejects a wrong or missing secret with 401 and stores nothing', async () => {
      for (const headers of [{}, {authorization: 'Bearer wrong-secret-of-some-length'}, {authorization: CLUSTER_SECRET}] as Record<string, string>[]) {
        const answer = await http('POST', `${ss.url}/v1/servers`, {json: {url: 'http://127.0.0.1:9'}, headers})
        expectProblem(answer, 401, 'FC_UNAUTHORIZED')
        expect(answer.headers.get('www-authenticate')).to.equal('Bearer')
      }
      expect((await db.query('SELECT count(*)::int AS n FROM chat_servers'))[0].n).to.equal(0)
    })

    it('rejects malformed registrations with a 400 problem and stores nothing', async () => {
      const bad: unknown[] = [{}, {url: 'not a url'}, {url: 'ftp://127.0.0.1'}, {url: 42}, {url: 'http://127.0.0.1:9', extra: 1}, []]
      for (const json of bad) {
        const answer = await http('POST', `${ss.url}/v1/servers`, {json, headers: auth})
        expectProblem(answer, 400, 'FC_VALIDATION')
        expect(answer.body.errors).to.be.an('array').that.is.not.empty
      }
      expectProblem(await http('POST', `${ss.url}/v1/servers`, {body: '{"url":', headers: {...auth, 'content-type': 'application/json'}}), 400, 'FC_MALFORMED_JSON')
      expectProblem(await http('POST', `${ss.url}/v1/servers`, {body: 'url=x', headers: {...auth, 'content-type': 'application/x-www-form-urlencoded'}}), 415, 'FC_UNSUPPORTED_MEDIA_TYPE')
      expectProblem(await http('POST', `${ss.url}/v1/servers`, {json: {url: `http://127.0.0.1/${'a'.repeat(20_000)}`}, headers: auth}), 413, 'FC_PAYLOAD_TOO_LARGE')
      expect((await db.query('SELECT count(*)::int AS n FROM chat_servers'))[0].n).to.equal(0)
    })

    it('answers 404 to the heartbeat of an unknown server and 400 to a bad id', async () => {
      expectProblem(await http('PUT', `${ss.url}/v1/servers/7b0f7f4e-6f5e-4a53-9d1e-0c1b1c1d1e1f/heartbeat`, {json: {}, headers: auth}), 404, 'FC_SERVER_NOT_REGISTERED')
      expectProblem(await http('PUT', `${ss.url}/v1/servers/nope/heartbeat`, {json: {}, headers: auth}), 400, 'FC_VALIDATION')
    })

    it('answers unknown routes with a 404 problem', async () => {
      expectProblem(await http('GET', `${ss.url}/v2/whatever`), 404, 'FC_ROUTE_NOT_FOUND')
    })
  })
})
