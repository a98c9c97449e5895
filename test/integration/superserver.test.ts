import {expect} from 'chai'

import type {RunningChatServer} from '../../server/main.js'
import type {RunningSuperserver} from '../../superserver/main.js'
import {CLUSTER_AUTH, CLUSTER_SECRET, startTestServer, startTestSuperserver, testEnv, waitForHealthy} from '../helpers/cluster.js'
import {http} from '../helpers/http.js'
import {eventually, startCli} from '../helpers/processes.js'
import type {DataSource} from 'typeorm'

import {ConfigError} from '../../server/settings.js'
import {createDataSource} from '../../storage/data-source.js'
import {ChatServerRepository} from '../../storage/repositories/chat-server.repository.js'
import {loadSuperserverConfig} from '../../superserver/config.js'
import {truncateAll} from '../helpers/database.js'

const assign = async (superserverUrl: string): Promise<string> => {
  const {status, body} = await http<{server: string}>('GET', `${superserverUrl}/v1/assign`)
  expect(status).to.equal(200)
  return body.server
}

const assignAvoiding = async (superserverUrl: string, avoid: string[]): Promise<string> => {
  const {status, body} = await http<{server: string}>('GET', `${superserverUrl}/v1/assign?${new URLSearchParams(avoid.map((url) => ['avoid', url]))}`)
  expect(status, JSON.stringify(body)).to.equal(200)
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

  const superserver = async (env: NodeJS.ProcessEnv = {}) => {
    const s = await startTestSuperserver(env)
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

  describe('balancing strategies', () => {
    // Fake chat servers (nothing listens at their URLs: the superserver never calls them), heartbeating
    // by hand. A long heartbeat keeps them healthy between the beats the test sends.
    const auth = {authorization: `Bearer ${CLUSTER_SECRET}`}
    const LONG_BEATS = {FASTCHAT_HEARTBEAT_MS: '60000'}
    const [busyUrl, idleUrl] = ['http://127.0.0.1:9/busy', 'http://127.0.0.1:9/idle']

    const register = async (ssUrl: string, url: string): Promise<string> => {
      const answer = await http<{id: string}>('POST', `${ssUrl}/v1/servers`, {json: {url}, headers: auth})
      expect(answer.status).to.equal(201)
      return answer.body.id
    }
    const beat = async (ssUrl: string, id: string, stats: Record<string, unknown>) => {
      const answer = await http('PUT', `${ssUrl}/v1/servers/${id}/heartbeat`, {json: {stats}, headers: auth})
      expect(answer.status, JSON.stringify(answer.body)).to.equal(204)
    }
    /** Two servers: busy (10 open polls) and idle (2 polls + 3 streams = 5); busy registered first. */
    const twoServers = async (env: NodeJS.ProcessEnv) => {
      const ss = await superserver({...LONG_BEATS, ...env})
      const busy = await register(ss.url, busyUrl)
      const idle = await register(ss.url, idleUrl)
      await beat(ss.url, busy, {openPolls: 10})
      await beat(ss.url, idle, {openPolls: 2, openStreams: 3})
      return {ss, busy, idle}
    }
    const tally = (urls: string[]) => ({busy: urls.filter((u) => u === busyUrl).length, idle: urls.filter((u) => u === idleUrl).length})

    it('least-loaded assigns the less loaded server, counting assignments since its heartbeat as load, ties in turn', async () => {
      const {ss, busy, idle} = await twoServers({FASTCHAT_STRATEGY: 'least-loaded'})
      expect((await http('GET', `${ss.url}/v1/servers`, {headers: CLUSTER_AUTH})).body.strategy).to.equal('least-loaded')
      // Idle has 5 to busy's 10: the next five clients go to idle (its load 5, 6, ... 9 at the time) ...
      const first: string[] = []
      for (let i = 0; i < 5; i++) first.push(await assign(ss.url))
      expect(first).to.deep.equal(Array(5).fill(idleUrl))
      const listed = (await http('GET', `${ss.url}/v1/servers`, {headers: CLUSTER_AUTH})).body.servers
      expect(listed.find((s: {url: string}) => s.url === idleUrl)).to.include({assignedSinceBeat: 5, openPolls: 2, openStreams: 3})
      // ... then both are at 10 and they take turns.
      const next: string[] = []
      for (let i = 0; i < 6; i++) next.push(await assign(ss.url))
      expect(tally(next)).to.deep.equal({busy: 3, idle: 3})
      expect(next[0]).to.not.equal(next[1])

      // A heartbeat replaces the figures and forgets the assignments it now counts: busy emptied, idle filled.
      // (No openStreams from busy: a server that does not report streams has none.)
      await beat(ss.url, busy, {openPolls: 1})
      await beat(ss.url, idle, {openPolls: 30})
      expect(await assign(ss.url)).to.equal(busyUrl)
      const after = (await http('GET', `${ss.url}/v1/servers`, {headers: CLUSTER_AUTH})).body.servers
      expect(after.find((s: {url: string}) => s.url === idleUrl)).to.include({assignedSinceBeat: 0})
      expect(after.find((s: {url: string}) => s.url === busyUrl)).to.include({assignedSinceBeat: 1})
    })

    it('least-loaded spreads a burst of concurrent assignments between two heartbeats instead of herding', async () => {
      const {ss} = await twoServers({FASTCHAT_STRATEGY: 'least-loaded'})
      // 25 clients at once: 5 fill idle up to busy's 10, the other 20 split evenly (each assignment sees the ones before).
      const got = await Promise.all(Array.from({length: 25}, () => assign(ss.url)))
      expect(tally(got)).to.deep.equal({busy: 10, idle: 15})
    })

    it('least-loaded counts concurrent assignments on one database (each sees the ones before it)', async () => {
      // Straight at the repository, 40 statements at once over 10 connections: without the row locks
      // several would read the same counts and herd onto the emptier server.
      const repository = new ChatServerRepository(db)
      const busy = await repository.register(busyUrl)
      const idle = await repository.register(idleUrl)
      await repository.heartbeat(busy, false, {openPolls: 20})
      await repository.heartbeat(idle, false, {openPolls: 0})
      const got = await Promise.all(Array.from({length: 40}, () => repository.assignLeastLoaded(60_000)))
      expect(tally(got as string[])).to.deep.equal({busy: 10, idle: 30})
      const [row] = await db.query(`SELECT assigned_since_beat AS n FROM chat_servers WHERE id = $1`, [idle])
      expect(row.n).to.equal(30)
    })

    it('least-loaded skips unhealthy and draining servers', async () => {
      const {ss, idle} = await twoServers({FASTCHAT_STRATEGY: 'least-loaded'})
      const answer = await http('PUT', `${ss.url}/v1/servers/${idle}/heartbeat`, {json: {draining: true, stats: {openPolls: 0}}, headers: auth})
      expect(answer.status).to.equal(204)
      for (let i = 0; i < 3; i++) expect(await assign(ss.url)).to.equal(busyUrl)
    })

    it('round-robin stays the default, whatever the load', async () => {
      const {ss} = await twoServers({FASTCHAT_STRATEGY: ''})
      expect((await http('GET', `${ss.url}/v1/servers`, {headers: CLUSTER_AUTH})).body.strategy).to.equal('round-robin')
      const got: string[] = []
      for (let i = 0; i < 8; i++) got.push(await assign(ss.url))
      expect(tally(got)).to.deep.equal({busy: 4, idle: 4})
      for (let i = 1; i < got.length; i++) expect(got[i]).to.not.equal(got[i - 1])
    })

    it('?avoid=URL passes over the server a client just failed on while another is healthy, with either strategy', async () => {
      for (const strategy of ['round-robin', 'least-loaded']) {
        await truncateAll(db)
        const {ss, idle} = await twoServers({FASTCHAT_STRATEGY: strategy})
        // least-loaded would pick idle (load 5 against 10): avoided (a trailing slash is the same server), busy gets every client.
        for (const avoid of [idleUrl, `${idleUrl}/`]) {
          for (let i = 0; i < 4; i++) expect(await assignAvoiding(ss.url, [avoid]), strategy).to.equal(busyUrl)
        }
        // Avoiding busy instead: idle every time, also for round-robin, which would otherwise alternate.
        for (let i = 0; i < 4; i++) expect(await assignAvoiding(ss.url, [busyUrl]), strategy).to.equal(idleUrl)
        // Avoiding the only healthy server still answers it: better than a 503 that would stop the client.
        await http('PUT', `${ss.url}/v1/servers/${idle}/heartbeat`, {json: {draining: true}, headers: auth})
        expect(await assignAvoiding(ss.url, [busyUrl]), strategy).to.equal(busyUrl)
        await Promise.all(superservers.splice(0).map((s) => s.close()))
      }
    })

    it('refuses an ?avoid= that is not a list of a few URLs with a 400 problem', async () => {
      const ss = await superserver(LONG_BEATS)
      await register(ss.url, busyUrl)
      const many = new URLSearchParams(Array.from({length: 9}, (_, i) => ['avoid', `http://10.0.0.${i}:1`]))
      expectProblem(await http('GET', `${ss.url}/v1/assign?${many}`), 400, 'FC_VALIDATION')
      expectProblem(await http('GET', `${ss.url}/v1/assign?avoid=${'a'.repeat(3000)}`), 400, 'FC_VALIDATION')
    })

    it('rejects an unknown strategy at start-up and load figures that are not counts', async () => {
      expect(() => loadSuperserverConfig({port: 0}, testEnv({FASTCHAT_STRATEGY: 'random'}))).to.throw(ConfigError, /FASTCHAT_STRATEGY.*round-robin/s)
      expect(loadSuperserverConfig({port: 0, strategy: 'least-loaded'}, testEnv()).strategy).to.equal('least-loaded')
      const ss = await superserver(LONG_BEATS)
      const id = await register(ss.url, busyUrl)
      for (const stats of [{openStreams: -1}, {openStreams: 'many'}, {openPolls: 1.5}, {openPolls: true}]) {
        expectProblem(await http('PUT', `${ss.url}/v1/servers/${id}/heartbeat`, {json: {stats}, headers: auth}), 400, 'FC_VALIDATION')
      }
      await beat(ss.url, id, {openPolls: 0, openStreams: 7, version: 'x'})
    })
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

    it('refuses to register a wildcard address, which no client can dial (a loopback one only from another machine: see multi-host.test.ts)', async () => {
      for (const url of ['http://0.0.0.0:4001', 'http://[::]:4001']) {
        const answer = await http('POST', `${ss.url}/v1/servers`, {json: {url}, headers: auth})
        expectProblem(answer, 400, 'FC_VALIDATION')
        expect(answer.body.detail).to.include('--url')
      }
      // From this machine, a loopback URL is what a local cluster uses.
      expect((await http('POST', `${ss.url}/v1/servers`, {json: {url: 'http://localhost:9'}, headers: auth})).status).to.equal(201)
      expect((await db.query('SELECT url FROM chat_servers')).map((r: {url: string}) => r.url)).to.deep.equal(['http://localhost:9'])
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
