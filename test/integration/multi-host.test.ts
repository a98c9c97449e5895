import {setTimeout as sleep} from 'node:timers/promises'

import {expect} from 'chai'

import {fakeCiphertext, registerAndLogin, type TestUser, uniqueName} from '../helpers/api.js'
import {CliUser, removeCliHomes} from '../helpers/cli.js'
import {CLUSTER_AUTH, CLUSTER_SECRET, testEnv} from '../helpers/cluster.js'
import {freshDatabase} from '../helpers/database.js'
import {http} from '../helpers/http.js'
import {available, createHosts, type HostProcess, type Hosts} from '../helpers/netns.js'
import {cliIn, startFastchatIn} from '../helpers/netns-cli.js'
import {eventually} from '../helpers/processes.js'

/*
 * Issue 15's acceptance test: each process on a host of its own (network
 * namespaces, test/helpers/netns.ts), the database behind the root
 * namespace, and the network between two of them cut silently while
 * clients keep sending and receiving.
 *
 *   super (superserver :4000)   s1, s2 (chat servers :4001)   c1, c2 (CLI clients)   db (.2, a forwarder to PostgreSQL)
 */

const HEARTBEAT_MS = 250
const HEALTH_TIMEOUT_MS = 500
const DB_QUERY_TIMEOUT_MS = 2_000
/** A loaded two-core machine (CLI processes, scrypt, five node processes) adds this to any figure it is held to. */
const SCHEDULING_SLACK_MS = 500
/** Superserver: s1's heartbeat after the cut waits up to the health check's timeout, then says "unavailable". */
const UNASSIGN_BOUND_MS = 2 * HEARTBEAT_MS + HEALTH_TIMEOUT_MS + SCHEDULING_SLACK_MS
/** A request whose query meets a silent network ends within the query timeout, plus 1.5 s to answer. */
const IN_FLIGHT_BOUND_MS = DB_QUERY_TIMEOUT_MS + 1_500
const CLI_FAILOVER_BOUND_MS = 10_000
const RECHECK_DELIVERY_BOUND_MS = 3_000
const SUPER_PORT = 4000
const SERVER_PORT = 4001

interface Listed {
  url: string
  healthy: boolean
  databaseOk: boolean
}

describe('several hosts (network namespaces)', function () {
  this.timeout(60_000)

  let hosts: Hosts | undefined
  let superUrl: string
  let s1Url: string
  let s2Url: string
  const processes = new Map<string, HostProcess>()
  let traffic: Traffic | undefined

  before(async function () {
    const reason = await available()
    if (reason) {
      console.log(`      multi-host: skipped, network namespaces cannot be made here: ${reason}`)
      this.skip()
    }
    hosts = await createHosts(['super', 's1', 's2', 'c1', 'c2'])
    // A database of its own: the registry must hold only this cluster's servers.
    const databaseUrl = await hosts.forwardDatabase(await freshDatabase('multihost', {migrated: true}))
    const env = testEnv({
      DATABASE_URL: databaseUrl,
      FASTCHAT_CLUSTER_SECRET: CLUSTER_SECRET,
      FASTCHAT_HEARTBEAT_MS: String(HEARTBEAT_MS),
      FASTCHAT_SCRYPT_LOG2_N: '14',
      FASTCHAT_RATE_LIMITS: 'off',
      LOG_LEVEL: 'warn',
      FASTCHAT_DB_QUERY_TIMEOUT_MS: String(DB_QUERY_TIMEOUT_MS),
      FASTCHAT_DB_STATEMENT_TIMEOUT_MS: '1500',
      FASTCHAT_DB_CONNECT_TIMEOUT_MS: '1000',
      FASTCHAT_HEALTH_TIMEOUT_MS: String(HEALTH_TIMEOUT_MS),
      FASTCHAT_HEALTH_CACHE_MS: '250',
    })
    superUrl = `http://${hosts.address('super')}:${SUPER_PORT}`
    s1Url = `http://${hosts.address('s1')}:${SERVER_PORT}`
    s2Url = `http://${hosts.address('s2')}:${SERVER_PORT}`
    traffic = new Traffic(hosts, superUrl)
    processes.set('super', await startFastchatIn(hosts, 'super', ['superserver', '--port', String(SUPER_PORT), '--host', '0.0.0.0'], env))
    const server = ['server', '--port', String(SERVER_PORT), '--host', '0.0.0.0', '--superserver', superUrl]
    const [s1, s2] = await Promise.all([startFastchatIn(hosts, 's1', server, env), startFastchatIn(hosts, 's2', server, env)])
    processes.set('s1', s1).set('s2', s2)
  })

  after(async function () {
    this.timeout(30_000)
    try {
      await traffic?.stop()
    } finally {
      await hosts?.destroy()
      await removeCliHomes()
    }
  })

  const listServers = async (): Promise<Listed[]> => {
    const {status, body} = await http<{servers: Listed[]}>('GET', `${superUrl}/v1/servers`, {headers: CLUSTER_AUTH})
    if (status !== 200) throw new Error(`GET /v1/servers: ${status}`)
    return body.servers
  }
  const entry = async (url: string) => (await listServers()).find((s) => s.url === url)
  const assign = async (avoid?: string): Promise<string> => {
    const {status, body} = await http<{server: string}>('GET', `${superUrl}/v1/assign${avoid ? `?avoid=${encodeURIComponent(avoid)}` : ''}`)
    if (status !== 200) throw new Error(`GET /v1/assign: ${status} ${JSON.stringify(body)}`)
    return body.server
  }
  /** Waits until the registry lists exactly s1 and s2, healthy; fails with what it lists instead. */
  const clusterReady = async () => {
    let listed: Listed[] = []
    const want = [s1Url, s2Url].sort()
    const ready = () => listed.filter((s) => s.healthy).map((s) => s.url).sort().join(' ') === want.join(' ') && listed.length === 2
    await eventually(async () => ((listed = await listServers()), ready()), 'the superserver to list s1 and s2, healthy', 15_000).catch(() => undefined)
    const seen = listed.map((s) => ({url: s.url, healthy: s.healthy})).sort((a, b) => (a.url < b.url ? -1 : 1))
    expect(seen, 'the registry').to.deep.equal(want.map((url) => ({url, healthy: true})))
  }

  it('1. a server listening on 0.0.0.0 without --url registers the address it reaches the superserver from, and clients on other hosts reach it', async () => {
    let listed: string[] = []
    const want = [s1Url, s2Url].sort()
    await eventually(async () => ((listed = (await listServers()).map((s) => s.url).sort()), listed.join(' ') === want.join(' ')), 'two registrations', 10_000).catch(
      () => undefined,
    )
    expect(listed, 'the URLs the superserver lists').to.deep.equal(want)
    expect(processes.get('s1')!.stdout()).to.include(s1Url)
    for (const client of ['c1', 'c2']) {
      for (const url of want) expect((await httpFrom(hosts!, client, 'GET', `${url}/healthz`)).status, `GET ${url}/healthz from ${client}`).to.equal(200)
    }
  })

  it('2. the superserver refuses a loopback URL registered from another host', async () => {
    const answer = await httpFrom(hosts!, 'c1', 'POST', `${superUrl}/v1/servers`, {headers: CLUSTER_AUTH, json: {url: `http://127.0.0.1:${SERVER_PORT}`}})
    if (answer.status === 201) {
      // Registered: take it out again, so no client of the other tests is sent to this machine's 127.0.0.1.
      await http('DELETE', `${superUrl}/v1/servers/${(answer.json as {id: string}).id}`, {headers: CLUSTER_AUTH})
    }
    expect(answer.status, answer.text).to.equal(400)
    expect(answer.type).to.match(/^application\/problem\+json/)
    expect((answer.json as {code?: unknown}).code).to.be.a('string')
  })

  describe('through cuts, with traffic all along', function () {
    before(async function () {
      this.timeout(40_000)
      await clusterReady()
      // Sessions are valid on every server: the background users start on different ones.
      const [alice, bob] = await Promise.all([registerAndLogin(s1Url, uniqueName('bga')), registerAndLogin(s2Url, uniqueName('bgb'), 'bob')])
      traffic!.start(alice, bob)
    })

    it('3a. ?avoid= steers among healthy servers only', async () => {
      await clusterReady()
      const answers = []
      for (let i = 0; i < 20; i++) answers.push(await assign(s1Url))
      expect(answers.filter((url) => url === s1Url), 'assignments of the avoided s1 while s2 is healthy').to.have.length(0)
    })

    it('3. a server cut from its database is unassigned, says so on /healthz, and its CLI client fails over within seconds', async function () {
      this.timeout(60_000)
      await clusterReady()
      const dave = await registerAndLogin(s2Url, uniqueName('dave'), 'bob')
      const carol = await CliUser.create('carol', superUrl)
      await cliIn(hosts!, 'c1', carol, ['register', carol.username])
      await carol.writeJson('profile.json', {...(await carol.readJson('profile.json')), server: s1Url})
      let started = performance.now()
      await cliIn(hosts!, 'c1', carol, ['send', `@${dave.username}`, 'before the cut'])
      const baselineMs = performance.now() - started

      await hosts!.cut('s1', 'db')
      const cutAt = performance.now()
      try {
        await eventually(async () => {
          const s1 = await entry(s1Url)
          return s1 && !s1.healthy && !s1.databaseOk
        }, 's1 to be listed healthy:false, databaseOk:false', 10_000)
        const unassignMs = performance.now() - cutAt
        console.log(`      multi-host: s1 listed unhealthy ${ms(unassignMs)} after its database cut (bound ${UNASSIGN_BOUND_MS} ms)`)
        expect(unassignMs, 'time until the superserver lists s1 as unhealthy').to.be.at.most(UNASSIGN_BOUND_MS)
        expect(await entry(s2Url)).to.include({healthy: true, databaseOk: true})

        const health = await http('GET', `${s1Url}/healthz`)
        expect(health.status).to.equal(503)
        expect(health.body).to.include({status: 'unavailable', database: 'unavailable'})
        expect(health.body.reason).to.be.a('string').and.not.equal('')

        for (let i = 0; i < 20; i++) expect(await assign(), 'GET /v1/assign while s1 is cut from the database').to.equal(s2Url)
        for (let i = 0; i < 5; i++) expect(await assign(s2Url), 'avoiding the only healthy server still gets it').to.equal(s2Url)

        started = performance.now()
        const sent = await cliIn(hosts!, 'c1', carol, ['send', `@${dave.username}`, 'during the cut'])
        const failoverMs = performance.now() - started
        console.log(`      multi-host: CLI send from c1, logged in on s1, failed over to s2 in ${ms(failoverMs)} (the same send before the cut: ${ms(baselineMs)})`)
        expect(failoverMs, 'CLI send from c1, logged in on s1').to.be.at.most(CLI_FAILOVER_BOUND_MS)
        expect((await carol.readJson('profile.json')).server, 'the profile moved to s2').to.equal(s2Url)
        await eventually(async () => {
          const {body} = await http<{events: {id: string}[]}>('GET', `${s2Url}/v1/events?since=0&timeout=0`, {headers: dave.auth})
          return body.events.some((e) => e.id === sent.id)
        }, 'dave to have the message sent during the cut')
      } finally {
        await hosts!.heal('s1', 'db')
      }
      const healedAt = performance.now()
      await eventually(async () => (await entry(s1Url))?.healthy, 's1 healthy again after the heal', 15_000)
      await eventually(async () => (await assign()) === s1Url, 's1 assigned again', 10_000)
      console.log(`      multi-host: s1 assigned again ${ms(performance.now() - healedAt)} after the heal`)
    })

    it('4. a request whose query meets a cut answers 503 within the query timeout', async function () {
      this.timeout(30_000)
      await clusterReady()
      const [user, peer] = await Promise.all([registerAndLogin(s1Url, uniqueName('inflight')), registerAndLogin(s2Url, uniqueName('peer'), 'bob')])
      // A session s1 has cached and a pool that has just worked.
      for (let i = 0; i < 3; i++) expect((await postMessage(user, s1Url, peer.username, `warm-${i}`)).status).to.equal(201)

      await hosts!.cut('s1', 'db')
      const started = performance.now()
      const answer = await postMessage(user, s1Url, peer.username, 'at-the-cut', IN_FLIGHT_BOUND_MS + 2_000)
      const endedMs = performance.now() - started
      await hosts!.heal('s1', 'db')
      console.log(`      multi-host: a write at the database cut ended after ${ms(endedMs)} with ${answer.status || 'no answer'} (bound ${IN_FLIGHT_BOUND_MS} ms)`)
      expect(answer.status, `no answer within ${IN_FLIGHT_BOUND_MS + 2_000} ms: the query waits for the network`).to.equal(503)
      expect(endedMs).to.be.at.most(IN_FLIGHT_BOUND_MS)
      expect(answer.type).to.match(/^application\/problem\+json/)
      expect(answer.body.code).to.equal('FC_DATABASE_UNAVAILABLE')
      await eventually(async () => (await entry(s1Url))?.healthy, 's1 healthy again after the heal', 15_000)
    })

    it('5. a peer push lost to a cut costs latency only, and is named in a few warnings', async function () {
      this.timeout(40_000)
      await clusterReady()
      const [alice, bob] = await Promise.all([registerAndLogin(s1Url, uniqueName('pusha')), registerAndLogin(s2Url, uniqueName('pushb'), 'bob')])
      const arrivals = new Map<string, number>()
      const stop = new AbortController()
      const listening = (async () => {
        let since = 0
        while (!stop.signal.aborted) {
          try {
            const answer = await fetch(`${s2Url}/v1/events?since=${since}&timeout=10000`, {headers: bob.auth, signal: AbortSignal.any([stop.signal, AbortSignal.timeout(15_000)])})
            const body = (await answer.json()) as {events: {id: string}[]; next: number}
            for (const event of body.events) if (!arrivals.has(event.id)) arrivals.set(event.id, performance.now())
            since = body.next ?? since
          } catch {
            if (!stop.signal.aborted) await sleep(100)
          }
        }
      })()
      try {
        // Bob's poll is open on s2 (and s2 has recorded where he listens) once a first message reaches him.
        const first = await postMessage(alice, s1Url, bob.username, 'before-the-cut')
        expect(first.status).to.equal(201)
        await eventually(async () => arrivals.has(first.body.id), 'bob to receive a message before the cut')

        const s1 = processes.get('s1')!
        const mark = s1.stderr().length
        await hosts!.cut('s1', 's2')
        const acknowledged: {id: string; at: number}[] = []
        // Spread over more than one peer backoff (5 s): the push fails again, not only is skipped.
        for (let i = 0; i < 20; i++) {
          const answer = await postMessage(alice, s1Url, bob.username, `cut-${i}`)
          expect(answer.status, JSON.stringify(answer.body)).to.equal(201)
          acknowledged.push({id: answer.body.id, at: performance.now()})
          await sleep(300)
        }
        await eventually(async () => acknowledged.every((a) => arrivals.has(a.id)), 'bob to receive all 20 messages sent during the cut', 15_000)
        const latencies = acknowledged.map((a) => arrivals.get(a.id)! - a.at)
        const warnings = () =>
          jsonLines(s1.stderr().slice(mark)).filter((line) => line.level === 40 && /peer push/i.test(String(line.msg)) && line.peer === s2Url)
        await eventually(async () => warnings().length > 0, `s1 to log a warning naming ${s2Url}`, 5_000).catch(() => undefined)
        await hosts!.heal('s1', 's2')
        console.log(
          `      multi-host: with s1 and s2 cut apart, 20 messages reached bob on s2 in ${ms(Math.min(...latencies))} to ${ms(Math.max(...latencies))} ` +
            `(first ${ms(latencies[0]!)}); s1 logged ${warnings().length} peer-push warning(s)`,
        )
        expect(Math.max(...latencies), 'delivery by the re-check').to.be.at.most(RECHECK_DELIVERY_BOUND_MS)
        expect(warnings(), `warn lines naming the peer ${s2Url} in s1's stderr:\n${s1.stderr().slice(mark, mark + 2_000)}`).to.have.length.within(1, 3)
      } finally {
        stop.abort()
        await listening
        await hosts!.heal('s1', 's2')
      }
    })

    it('6. through every cut, each acknowledged message arrived exactly once and nothing twice', async function () {
      this.timeout(60_000)
      expect(traffic?.running, 'the background traffic ran').to.equal(true)
      await traffic!.finish()
      const report = traffic!.report()
      console.log(
        `      multi-host: background traffic: ${report.acknowledged} acknowledged, ${report.received} received, ${report.unacknowledgedReceived} received unacknowledged, ` +
          `${report.failovers} failovers; answers: ${report.statuses}`,
      )
      expect(report.acknowledged, 'messages acknowledged in the background').to.be.greaterThan(20)
      for (const check of report.perRecipient) {
        expect(check.missing, `acknowledged messages ${check.username} never received`).to.deep.equal([])
        expect(check.twice, `messages ${check.username} received more than once`).to.deep.equal([])
        expect(check.seqs, `${check.username}'s cursor never skipped`).to.deep.equal(check.seqs.map((_, i) => i + 1))
      }
      expect(report.abandoned, 'messages never acknowledged').to.deep.equal([])
      expect(report.unexpectedStatuses, 'answers other than 201, 200 and 503').to.deep.equal([])
    })
  })
})

/** One HTTP request made from a host (node's fetch in its namespace). */
async function httpFrom(
  hosts: Hosts,
  host: string,
  method: string,
  url: string,
  options: {headers?: Record<string, string>; json?: unknown} = {},
): Promise<{status: number; type: string; text: string; json: unknown}> {
  const script = `(async () => {
    const [method, url, headers, body] = JSON.parse(process.argv[1])
    const answer = await fetch(url, {method, headers, body, signal: AbortSignal.timeout(5000)})
    console.log(JSON.stringify({status: answer.status, type: answer.headers.get('content-type') ?? '', text: await answer.text()}))
  })().catch((error) => { console.log(JSON.stringify({status: 0, type: '', text: String(error.cause ?? error)})) })`
  const headers = {...options.headers, ...(options.json === undefined ? {} : {'content-type': 'application/json'})}
  const request = JSON.stringify([method, url, headers, options.json === undefined ? undefined : JSON.stringify(options.json)])
  const result = await hosts.exec(host, process.execPath, ['-e', script, request], {timeoutMs: 15_000})
  const answer = JSON.parse(result.stdout) as {status: number; type: string; text: string}
  let json: unknown
  try {
    json = JSON.parse(answer.text)
  } catch {
    json = undefined
  }
  return {...answer, json}
}

/** POST /v1/messages, bounded: status 0 when no answer came within `timeoutMs`. */
async function postMessage(from: TestUser, server: string, to: string, text: string, timeoutMs = 5_000): Promise<{status: number; type: string; body: any}> {
  try {
    const answer = await fetch(`${server}/v1/messages`, {
      method: 'POST',
      headers: {...from.auth, 'content-type': 'application/json', 'idempotency-key': `${from.username}-${text}`},
      body: JSON.stringify({to: {user: to}, kind: 'text', ciphertext: fakeCiphertext(text)}),
      signal: AbortSignal.timeout(timeoutMs),
    })
    const type = answer.headers.get('content-type') ?? ''
    return {status: answer.status, type, body: /json/.test(type) ? await answer.json() : await answer.text()}
  } catch {
    return {status: 0, type: '', body: undefined}
  }
}

const ms = (value: number) => `${Math.round(value)} ms`

/** The pino lines of a process's output (a line still being written is left out). */
function jsonLines(output: string): Record<string, unknown>[] {
  return output.split('\n').flatMap((line) => {
    try {
      return line.startsWith('{') ? [JSON.parse(line) as Record<string, unknown>] : []
    } catch {
      return []
    }
  })
}

/** Pause between two sends of one background sender. */
const SEND_GAP_MS = 50
/** A background client asks the superserver afresh this often (in requests), as new clients would: traffic crosses both servers. */
const REASSIGN_EVERY = 10

/**
 * Two users writing to each other and following their cursors for the whole
 * describe: each message with its own Idempotency-Key, retried until 201;
 * on a 503 or no answer, the client asks the superserver for another server
 * (`?avoid=` the one that failed). Sessions are valid on every server.
 */
class Traffic {
  running = false
  private readonly stopSending = new AbortController()
  private readonly stopReceiving = new AbortController()
  private senders: Promise<void>[] = []
  private receivers: Promise<void>[] = []
  private readonly acknowledged: {id: string; to: string}[] = []
  private readonly abandoned: string[] = []
  private readonly seen = new Map<string, {seq: number; type: string; id: string}[]>()
  private readonly statuses = new Map<string, number>()
  private failovers = 0

  constructor(
    private readonly hosts: Hosts,
    private readonly superUrl: string,
  ) {}

  start(alice: TestUser, bob: TestUser): void {
    this.running = true
    this.senders = [this.send(alice, bob.username), this.send(bob, alice.username)]
    this.receivers = [this.receive(alice), this.receive(bob)]
  }

  /** Stops sending, waits until every acknowledged message has been received (or 30 s), then stops receiving. */
  async finish(): Promise<void> {
    this.stopSending.abort()
    await Promise.all(this.senders)
    await eventually(
      async () => this.acknowledged.every((a) => this.seen.get(a.to)?.some((e) => e.id === a.id)),
      'every acknowledged background message to be received',
      30_000,
    ).catch(() => undefined)
    await this.stop()
  }

  /** Stops at once: a message still unacknowledged is abandoned. */
  async stop(): Promise<void> {
    this.stopSending.abort()
    this.stopReceiving.abort()
    await Promise.all([...this.senders, ...this.receivers])
  }

  report() {
    const ackedIds = new Set(this.acknowledged.map((a) => a.id))
    const perRecipient = [...this.seen].map(([username, events]) => {
      const ids = events.filter((e) => e.type === 'message').map((e) => e.id)
      return {
        username,
        missing: this.acknowledged.filter((a) => a.to === username && !ids.includes(a.id)).map((a) => a.id),
        twice: ids.filter((id, i) => ids.indexOf(id) !== i),
        seqs: events.map((e) => e.seq),
      }
    })
    const received = [...this.seen.values()].flat().filter((e) => e.type === 'message')
    return {
      acknowledged: this.acknowledged.length,
      received: received.length,
      unacknowledgedReceived: received.filter((e) => !ackedIds.has(e.id)).length,
      failovers: this.failovers,
      abandoned: this.abandoned,
      perRecipient,
      statuses: [...this.statuses].map(([status, n]) => `${status}×${n}`).join(' '),
      unexpectedStatuses: [...this.statuses.keys()].filter((status) => !['200', '201', '503', 'no answer'].includes(status)),
    }
  }

  private count(status: string): void {
    this.statuses.set(status, (this.statuses.get(status) ?? 0) + 1)
  }

  /** A server from the superserver, other than `avoid` while another is healthy; only ever one of the test's hosts. */
  private async assign(avoid?: string): Promise<string | undefined> {
    try {
      const answer = await fetch(`${this.superUrl}/v1/assign${avoid ? `?avoid=${encodeURIComponent(avoid)}` : ''}`, {signal: AbortSignal.timeout(3_000)})
      if (answer.status !== 200) return void (await answer.body?.cancel())
      const {server} = (await answer.json()) as {server: string}
      // Never follow a URL off the test's subnet (a loopback one would reach this machine's own services).
      return new URL(server).hostname.startsWith(`${this.hosts.subnet}.`) ? server : undefined
    } catch {
      return undefined
    }
  }

  private async failover(from: string): Promise<string> {
    const next = await this.assign(from)
    if (next && next !== from) this.failovers++
    return next ?? from
  }

  private async send(from: TestUser, to: string): Promise<void> {
    let server = from.server
    for (let n = 0; !this.stopSending.signal.aborted; n++) {
      const key = `bg-${n}`
      const deadline = Date.now() + 60_000
      for (;;) {
        // A message under way when sending stops is still retried until it is acknowledged.
        const answer = await postMessage(from, server, to, key, 4_000)
        this.count(answer.status === 0 ? 'no answer' : String(answer.status))
        if (answer.status === 201) {
          this.acknowledged.push({id: answer.body.id, to})
          break
        }
        // Past its deadline, or stopped for good (after(), when a test failed): given up, and said so.
        if (Date.now() > deadline || this.stopReceiving.signal.aborted) {
          this.abandoned.push(`${from.username}-${key}`)
          break
        }
        if (answer.status === 503 || answer.status === 0) server = await this.failover(server)
        await sleep(100)
      }
      if (n % REASSIGN_EVERY === REASSIGN_EVERY - 1) server = (await this.assign()) ?? server
      await sleep(SEND_GAP_MS)
    }
  }

  private async receive(user: TestUser): Promise<void> {
    const seen: {seq: number; type: string; id: string}[] = []
    this.seen.set(user.username, seen)
    let server = user.server
    let since = 0
    for (let n = 1; !this.stopReceiving.signal.aborted; n++) {
      try {
        const answer = await fetch(`${server}/v1/events?since=${since}&timeout=1000`, {
          headers: user.auth,
          signal: AbortSignal.any([this.stopReceiving.signal, AbortSignal.timeout(4_000)]),
        })
        this.count(String(answer.status))
        if (answer.status === 200) {
          const body = (await answer.json()) as {events: {seq: number; type: string; id?: string}[]; next: number}
          // Every event counts for the cursor's continuity; messages (not the receipts about them) for delivery.
          seen.push(...body.events.map((e) => ({seq: e.seq, type: e.type, id: e.id ?? `${e.type}#${e.seq}`})))
          since = body.next
          if (n % REASSIGN_EVERY === 0) server = (await this.assign()) ?? server
          continue
        }
        await answer.body?.cancel()
        if (answer.status === 503) server = await this.failover(server)
      } catch {
        if (this.stopReceiving.signal.aborted) return
        this.count('no answer')
        server = await this.failover(server)
      }
      await sleep(100)
    }
  }
}
