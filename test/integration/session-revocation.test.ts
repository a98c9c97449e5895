import {createHash} from 'node:crypto'
import {setTimeout as sleep} from 'node:timers/promises'

import {expect} from 'chai'

import type {RunningChatServer} from '../../server/main.js'
import {REVOCATION_BOUND_MS} from '../../server/services/session-cache.js'
import {createDataSource} from '../../storage/data-source.js'
import {SessionRepository} from '../../storage/repositories/session.repository.js'
import {login, registerAndLogin, type TestUser, uniqueName} from '../helpers/api.js'
import {CLUSTER_AUTH, startTestServer} from '../helpers/cluster.js'
import {http} from '../helpers/http.js'
import {startTcpProxy, type TcpProxy} from '../helpers/tcp-proxy.js'

/*
 * Issue 14, item 3: sessions from memory, revoked on every server within
 * REVOCATION_BOUND_MS. Three chat servers on one database; C reaches it
 * through a TCP proxy the tests cut, and has peer push off: it hears nothing
 * from its peers, and revocation does not need it to.
 */

/** Slack for the test machine (two cores, other suites beside) on top of the bound the servers promise. */
const MARGIN_MS = 200

const me = (server: string, user: TestUser) => http('GET', `${server}/v1/me`, {headers: user.auth})

/** A counter from a server's /metrics. */
async function metric(server: string, name: string): Promise<number> {
  const {body} = await http<string>('GET', `${server}/metrics`, {headers: CLUSTER_AUTH})
  const line = body.split('\n').find((l) => l.startsWith(`${name} `))
  if (!line) throw new Error(`${name} is not in ${server}/metrics`)
  return Number(line.split(' ')[1])
}

/** Asks `server` with the token until it answers 401; how long after `since` that answer came. Any answer but 200 or 401 fails. */
async function refusedAfter(server: string, user: TestUser, since: number): Promise<number> {
  for (;;) {
    const answer = await me(server, user)
    const elapsed = performance.now() - since
    if (answer.status === 401) {
      expect(answer.body.code).to.equal('FC_UNAUTHORIZED')
      return elapsed
    }
    expect(answer.status, JSON.stringify(answer.body)).to.equal(200)
    if (elapsed > 5 * REVOCATION_BOUND_MS) throw new Error(`${server} still accepts the revoked token after ${Math.round(elapsed)} ms`)
  }
}

describe('session revocation across servers (sessions from memory)', function () {
  this.timeout(60_000)
  let proxy: TcpProxy
  let a: RunningChatServer
  let b: RunningChatServer
  let c: RunningChatServer
  let servers: string[]
  const measured: string[] = []

  before(async () => {
    const database = new URL(process.env.DATABASE_URL!)
    proxy = await startTcpProxy({host: database.hostname, port: Number(database.port || 5432)})
    ;[a, b, c] = await Promise.all([
      startTestServer(),
      startTestServer(),
      startTestServer(undefined, {DATABASE_URL: proxy.url(process.env.DATABASE_URL!), FASTCHAT_PEER_PUSH: 'off'}),
    ])
    servers = [a.url, b.url, c.url]
  })
  after(async () => {
    proxy.heal()
    await Promise.all([a, b, c].map((server) => server?.close()))
    await proxy.close()
    if (measured.length > 0) console.log(`      revocation seen after: ${measured.join(', ')}`)
  })

  /** Uses the token on every server twice, so that each holds it in memory, and checks that the second use came from there. */
  async function cacheEverywhere(...users: TestUser[]): Promise<void> {
    for (const server of servers) {
      for (const user of users) expect((await me(server, user)).status).to.equal(200)
      const hits = await metric(server, 'fastchat_server_session_cache_hits_total')
      for (const user of users) expect((await me(server, user)).status).to.equal(200)
      expect(await metric(server, 'fastchat_server_session_cache_hits_total'), `${server} answered from memory`).to.equal(hits + users.length)
    }
  }

  it('answers 100 requests with one token after one session lookup', async () => {
    const user = await registerAndLogin(a.url, uniqueName('hundred'))
    const lookups = await metric(a.url, 'fastchat_server_session_lookups_total')
    const hits = await metric(a.url, 'fastchat_server_session_cache_hits_total')
    // Half at once (they share the first lookup), half one after the other.
    const together = await Promise.all(Array.from({length: 50}, () => me(a.url, user)))
    const statuses = together.map((answer) => answer.status)
    for (let i = 0; i < 50; i++) statuses.push((await me(a.url, user)).status)
    expect(statuses.filter((status) => status === 200)).to.have.length(100)
    expect(await metric(a.url, 'fastchat_server_session_lookups_total'), 'session lookups for 100 requests').to.equal(lookups + 1)
    // The 49 that joined the one lookup in flight did not count as hits; the 50 after it did.
    expect(await metric(a.url, 'fastchat_server_session_cache_hits_total')).to.be.at.least(hits + 50)
  })

  it(`a logout on one server stops the token on the two others within ${REVOCATION_BOUND_MS} ms`, async () => {
    const user = await registerAndLogin(a.url, uniqueName('logout'))
    await cacheEverywhere(user)

    expect((await http('DELETE', `${a.url}/v1/sessions/current`, {headers: user.auth})).status).to.equal(204)
    const answered = performance.now()
    expect((await me(a.url, user)).status, 'at once on the server that logged out').to.equal(401)
    const [onB, onC] = await Promise.all([refusedAfter(b.url, user, answered), refusedAfter(c.url, user, answered)])
    measured.push(`logout: B ${Math.round(onB)} ms, C ${Math.round(onC)} ms`)
    expect(Math.max(onB, onC)).to.be.at.most(REVOCATION_BOUND_MS + MARGIN_MS)
  })

  it(`logging out everywhere stops every token of the user on every server within ${REVOCATION_BOUND_MS} ms, and nobody else's`, async () => {
    const first = await registerAndLogin(a.url, uniqueName('everywhere'))
    const second = await login(b.url, first.username)
    const bystander = await registerAndLogin(c.url, uniqueName('bystander'))
    await cacheEverywhere(first, second, bystander)

    expect((await http('DELETE', `${b.url}/v1/sessions`, {headers: second.auth})).status).to.equal(204)
    const answered = performance.now()
    const times = await Promise.all(servers.flatMap((server) => [first, second].map((user) => refusedAfter(server, user, answered))))
    measured.push(`logout everywhere: ${times.map((t) => `${Math.round(t)}`).join('/')} ms`)
    expect(Math.max(...times)).to.be.at.most(REVOCATION_BOUND_MS + MARGIN_MS)
    for (const server of servers) expect((await me(server, bystander)).status).to.equal(200)
  })

  it('a server cut off from its database (and its peers) when the logout happens never accepts the token past the bound, and refuses it once healed', async () => {
    const user = await registerAndLogin(a.url, uniqueName('partition'))
    await cacheEverywhere(user)

    proxy.cut()
    const cutAt = performance.now()
    expect((await http('DELETE', `${a.url}/v1/sessions/current`, {headers: user.auth})).status).to.equal(204)
    const answered = performance.now()
    // C keeps being asked from the cut until 2 bounds after the logout.
    const answers: {sentMs: number; status: number; code?: string}[] = []
    while (performance.now() - answered < 2 * REVOCATION_BOUND_MS) {
      const sentMs = performance.now() - answered
      const answer = await me(c.url, user)
      answers.push({sentMs, status: answer.status, code: answer.body?.code})
      await sleep(20)
    }
    const late = answers.filter((answer) => answer.sentMs >= REVOCATION_BOUND_MS)
    expect(late.length).to.be.greaterThan(5)
    expect(late.filter((answer) => answer.status === 200), 'C answered the revoked token from memory past the bound').to.deep.equal([])
    for (const answer of late) expect(answer).to.deep.include({status: 503, code: 'FC_DATABASE_UNAVAILABLE'})
    const lastAccepted = answers.filter((answer) => answer.status === 200).at(-1)
    const firstRefusal = answers.find((answer) => answer.status !== 200)!
    measured.push(
      `partitioned C: last 200 sent ${lastAccepted ? Math.round(lastAccepted.sentMs) : '-'} ms after the logout, first ${firstRefusal.status} ` +
        `${Math.round(firstRefusal.sentMs)} ms after it (the cut was ${Math.round(answered - cutAt)} ms before the logout)`,
    )
    // B heard of it through the database, as ever.
    expect((await me(b.url, user)).status).to.equal(401)

    proxy.heal()
    const healed = performance.now()
    for (;;) {
      const answer = await me(c.url, user)
      expect(answer.status, 'after the heal: 503 until the database answers, then 401, never 200').to.be.oneOf([401, 503])
      if (answer.status === 401) break
      if (performance.now() - healed > 15_000) throw new Error('C never came back')
      await sleep(50)
    }
    measured.push(`C refused it ${Math.round(performance.now() - healed)} ms after the heal`)
    // And C serves other users from memory again.
    const other = await registerAndLogin(c.url, uniqueName('after'))
    expect((await me(c.url, other)).status).to.equal(200)
  })

  it('records each logout in the feed as it deletes the session, and prunes rows older than 10 minutes with the expired sessions', async () => {
    const db = await createDataSource({url: process.env.DATABASE_URL!, poolSize: 2}).initialize()
    try {
      const user = await registerAndLogin(a.url, uniqueName('feed'))
      const before = (await db.query('SELECT coalesce(max(id), 0)::int AS id FROM session_revocations'))[0].id as number
      expect((await http('DELETE', `${a.url}/v1/sessions/current`, {headers: user.auth})).status).to.equal(204)
      const rows = await db.query(
        `SELECT encode(token_hash, 'hex') AS hash, user_id FROM session_revocations WHERE id > $1`,
        [before],
      )
      expect(rows).to.deep.equal([{hash: createHash('sha256').update(user.token).digest('hex'), user_id: null}])
      expect((await db.query(`SELECT count(*)::int AS n FROM sessions WHERE token_hash = sha256(convert_to($1, 'UTF8'))`, [user.token]))[0].n).to.equal(0)

      await db.query(`INSERT INTO session_revocations (user_id, at) VALUES (1, now() - interval '11 minutes'), (2, now() - interval '9 minutes')`)
      await new SessionRepository(db, {idleMs: 14 * 24 * 3_600_000}).deleteExpired()
      const left = await db.query(`SELECT user_id::int AS u FROM session_revocations WHERE user_id IN (1, 2)`)
      expect(left).to.deep.equal([{u: 2}])
    } finally {
      await db.destroy()
    }
  })
})
