import {expect} from 'chai'
import {Agent, request} from 'undici'

import type {RunningChatServer} from '../../server/main.js'
import {fakeCiphertext, fixturePublicKey, joinGroup, PASSWORD, registerAndLogin, send, type TestUser, uniqueName} from '../helpers/api.js'
import {CLUSTER_SECRET, startTestServer} from '../helpers/cluster.js'
import {http} from '../helpers/http.js'
import {eventually} from '../helpers/processes.js'

const limited = {FASTCHAT_RATE_LIMITS: 'on', FASTCHAT_REGISTRATIONS_PER_HOUR: '4', FASTCHAT_SENDS_PER_10S: '5'}
/** Login failures: ten free per (account, address), then a backoff from 1 s; 15 per address an hour. */
const lockout = {FASTCHAT_TRUST_PROXY: 'loopback', FASTCHAT_LOGIN_FREE_FAILURES: '10', FASTCHAT_LOGIN_FAILURES_PER_IP_HOUR: '15'}
const cluster = {authorization: `Bearer ${CLUSTER_SECRET}`}

function expectRateLimited(answer: {status: number; headers: Headers; body: any}) {
  expect(answer.status).to.equal(429)
  expect(answer.body.code).to.equal('FC_RATE_LIMITED')
  const retryAfter = Number(answer.headers.get('retry-after'))
  expect(retryAfter).to.be.within(1, 3600)
  expect(answer.body.retryAfter).to.equal(retryAfter)
}

describe('rate limits and poll caps', () => {
  let server: RunningChatServer

  before(async () => {
    // Registrations are tested on a server of their own; here they only make users.
    server = await startTestServer(undefined, {...limited, ...lockout, FASTCHAT_REGISTRATIONS_PER_HOUR: '1000', FASTCHAT_MAX_POLLS_PER_USER: '3'})
  })
  after(async () => server.close())

  // Two client addresses on one machine: the server believes X-Forwarded-For from loopback (FASTCHAT_TRUST_PROXY).
  const from = (address: string) => ({'x-forwarded-for': address})
  const ATTACKER = '203.0.113.7'
  const OWNER = '198.51.100.20'
  const loginFrom = (address: string, username: string, password: string) =>
    http('POST', `${server.url}/v1/sessions`, {json: {username, password}, headers: from(address)})

  it('hole 7: ten wrong passwords from one address do not lock the owner out from another; the attacker waits, then the right password works', async () => {
    const alice = await registerAndLogin(server.url, uniqueName('alice'))
    const statuses = []
    for (let i = 0; i < 12; i++) statuses.push((await loginFrom(ATTACKER, alice.username, `wrong password ${i}`)).status)
    expect((await loginFrom(OWNER, alice.username, PASSWORD)).status, "the owner's login from another address").to.equal(201)
    // Ten failures are free (FASTCHAT_LOGIN_FREE_FAILURES); the tenth starts the pair's backoff.
    expect(statuses).to.deep.equal([...Array(10).fill(401), 429, 429])
    expectRateLimited(await loginFrom(ATTACKER, alice.username, 'yet another guess'))
    // The right password from the attacker's address waits out the backoff too (the pair is locked, not the password)...
    expectRateLimited(await loginFrom(ATTACKER, alice.username, PASSWORD))
    // ...and works once it is over, which also clears the pair's failures.
    await eventually(async () => (await loginFrom(ATTACKER, alice.username, PASSWORD)).status === 201, 'the backoff to end', 20_000)
    expect((await loginFrom(ATTACKER, alice.username, 'a typo')).status).to.equal(401)
  })

  it('hole 7: a locked pair is answered 429 before any password is hashed', async () => {
    const user = await registerAndLogin(server.url, uniqueName('locked'))
    const address = '203.0.113.99'
    for (let i = 0; i < 10; i++) expect((await loginFrom(address, user.username, `guess ${i}`)).status).to.equal(401)
    const hashes = async () => Number(/^fastchat_server_password_hashes_total (\d+)/m.exec((await http<string>('GET', `${server.url}/metrics`, {headers: cluster})).body)?.[1])
    const before = await hashes()
    expect(before).to.be.greaterThan(0)
    for (let i = 0; i < 5; i++) expectRateLimited(await loginFrom(address, user.username, PASSWORD))
    expect(await hashes(), 'no scrypt run for a refused login').to.equal(before)
  })

  it('hole 7: limits failed logins per address over all accounts; other addresses are not affected', async () => {
    const user = await registerAndLogin(server.url, uniqueName('victim'))
    const sprayer = '203.0.113.50'
    const statuses = []
    // Guessing one password for many accounts (FASTCHAT_LOGIN_FAILURES_PER_IP_HOUR is 15 here).
    for (let i = 0; i < 17; i++) statuses.push((await loginFrom(sprayer, uniqueName('spray'), 'Password123!')).status)
    expect(statuses.slice(0, 15)).to.deep.equal(Array(15).fill(401))
    expect(statuses.slice(15)).to.deep.equal([429, 429])
    expectRateLimited(await loginFrom(sprayer, user.username, PASSWORD))
    expect((await loginFrom(OWNER, user.username, PASSWORD)).status).to.equal(201)
  })

  it('limits registrations per address, and a refused one creates nothing', async () => {
    const fresh = await startTestServer(undefined, limited)
    try {
      const key = await fixturePublicKey('bob')
      const statuses = []
      const names = []
      for (let i = 0; i < 6; i++) {
        const username = uniqueName('reg')
        names.push(username)
        statuses.push((await http('POST', `${fresh.url}/v1/users`, {json: {username, password: PASSWORD, publicKey: key}})).status)
      }
      expect(statuses).to.deep.equal([201, 201, 201, 201, 429, 429])
      const lookup = await registerAndLogin(server.url, uniqueName('look'))
      expect((await http('GET', `${server.url}/v1/users/${names[5]}`, {headers: lookup.auth})).status).to.equal(404)
    } finally {
      await fresh.close()
    }
  })

  it('limits sending per account; another account is not affected', async () => {
    const [alice, bob] = await Promise.all([registerAndLogin(server.url, uniqueName('alice')), registerAndLogin(server.url, uniqueName('bob'))])
    const statuses = []
    for (let i = 0; i < 7; i++) statuses.push((await send(alice, bob.username, fakeCiphertext(i))).status)
    expect(statuses).to.deep.equal([201, 201, 201, 201, 201, 429, 429])
    expectRateLimited(await send(alice, bob.username, fakeCiphertext('again')))
    expect((await send(bob, alice.username, fakeCiphertext('mine'))).status).to.equal(201)
    const inbox = await http('GET', `${server.url}/v1/events?since=0&timeout=0`, {headers: bob.auth})
    expect(inbox.body.events, 'only the accepted messages were stored').to.have.length(5)
  })

  it('hole 6: a group send costs one point per recipient (capped at the window), and so does a group change that notifies every member', async () => {
    // Same database, no limits: sets the groups up without spending the limited server's allowance.
    const open = await startTestServer()
    try {
      const users = await Promise.all(Array.from({length: 10}, (_, i) => registerAndLogin(open.url, uniqueName(`fan${i}x`))))
      const [alice, dave, erin, ...others] = users as [TestUser, TestUser, TestUser, ...TestUser[]]
      const groupOf = async (admin: TestUser, members: TestUser[]) => {
        const created = await http('POST', `${open.url}/v1/groups`, {json: {name: 'fan-out', members: members.map((m) => m.username)}, headers: admin.auth})
        expect(created.status).to.equal(201)
        const epoch = await joinGroup(created.body.id, members)
        const keys = Object.fromEntries([admin, ...members].map((m) => [m.username, fakeCiphertext(m.username)]))
        expect((await http('PUT', `${open.url}/v1/groups/${created.body.id}/keys/${epoch}`, {json: {keys}, headers: admin.auth})).status).to.equal(204)
        return {id: created.body.id as string, epoch}
      }
      const small = await groupOf(alice, others.slice(0, 3))
      const big = await groupOf(dave, others)
      const huge = await groupOf(erin, others)
      const groupSend = (from: TestUser, group: {id: string; epoch: number}, n: number) =>
        http('POST', `${server.url}/v1/messages`, {json: {to: {group: group.id}, epoch: group.epoch, kind: 'text', ciphertext: fakeCiphertext(n)}, headers: from.auth})

      // 5 points per 10 s: a send to 3 members costs 3, so a second one (6) is refused, and with it alice's next 1:1 send.
      expect((await groupSend(alice, small, 1)).status).to.equal(201)
      expectRateLimited(await groupSend(alice, small, 2))
      expectRateLimited(await send({...alice, server: server.url}, dave.username, fakeCiphertext('after')))
      const history = await http('GET', `${open.url}/v1/conversations/${small.id}`, {headers: alice.auth})
      expect(history.body.messages, 'the refused send stored nothing').to.have.length(1)

      // A group beyond the allowance (7 recipients) can still be sent to, but it takes the whole window.
      expect((await groupSend(dave, big, 3)).status).to.equal(201)
      expectRateLimited(await groupSend(dave, big, 4))

      // A new epoch notifies every member: weighted the same way.
      expect((await http('POST', `${server.url}/v1/groups/${huge.id}/epochs`, {headers: erin.auth})).status).to.equal(201)
      expectRateLimited(await http('POST', `${server.url}/v1/groups/${huge.id}/epochs`, {headers: erin.auth}))
    } finally {
      await open.close()
    }
  })

  it('issue 16: device links are limited per address (10 a minute), and reading them per account (20 a minute)', async () => {
    const address = '203.0.113.160'
    const statuses = []
    // Counted before the body is read: a flood of junk costs the flooder the same as real requests.
    for (let i = 0; i < 11; i++) statuses.push((await http('POST', `${server.url}/v1/devices/links`, {json: {}, headers: from(address)})).status)
    expect(statuses).to.deep.equal([...Array(10).fill(400), 429])
    expectRateLimited(await http('POST', `${server.url}/v1/devices/links`, {json: {}, headers: from(address)}))
    expect((await http('POST', `${server.url}/v1/devices/links`, {json: {}, headers: from('203.0.113.161')})).status, 'another address').to.equal(400)
    const guesser = await registerAndLogin(server.url, uniqueName('guesser'))
    const reads = []
    for (let i = 0; i < 21; i++) reads.push((await http('GET', `${server.url}/v1/devices/links/ZZZZZ${i % 10}`, {headers: guesser.auth})).status)
    expect(reads).to.deep.equal([...Array(20).fill(404), 429])
  })

  it('lets a client\'s new poll replace its old one, and caps each user\'s open polls', async () => {
    const user: TestUser = await registerAndLogin(server.url, uniqueName('poller'))
    const agent = new Agent({connections: 10})
    const poll = async (client?: string) => {
      const started = Date.now()
      const answer = await request(`${server.url}/v1/events?since=0&timeout=5000`, {
        headers: {...user.auth, ...(client ? {'x-fastchat-client': client} : {})},
        dispatcher: agent,
      })
      await answer.body.json()
      return {status: answer.statusCode, ms: Date.now() - started}
    }
    const pause = () => new Promise((resolve) => setTimeout(resolve, 100))
    const first = poll('laptop')
    await pause()
    const second = poll('laptop')
    const replaced = await first
    expect(replaced.status).to.equal(200)
    expect(replaced.ms, 'the old poll answered when the new one came').to.be.lessThan(2_000)
    // Three more clients: with the cap at 3, the oldest open poll (laptop's second) gives way.
    await pause()
    const others = [poll('phone'), poll('tablet')]
    await pause()
    const fourth = poll('desktop')
    expect((await second).ms).to.be.lessThan(2_000)
    const rest = await Promise.all([...others, fourth])
    expect(rest.every((answer) => answer.status === 200 && answer.ms >= 4_000), 'the three newest waited their full time').to.equal(true)
    await agent.close()
  })
})
