import {expect} from 'chai'
import {Agent, request} from 'undici'

import type {RunningChatServer} from '../../server/main.js'
import {fakeCiphertext, fixturePublicKey, PASSWORD, registerAndLogin, send, type TestUser, uniqueName} from '../helpers/api.js'
import {startTestServer} from '../helpers/cluster.js'
import {http} from '../helpers/http.js'

const limited = {FASTCHAT_RATE_LIMITS: 'on', FASTCHAT_LOGINS_PER_MINUTE: '3', FASTCHAT_REGISTRATIONS_PER_HOUR: '4', FASTCHAT_SENDS_PER_10S: '5'}

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
    server = await startTestServer(undefined, {...limited, FASTCHAT_REGISTRATIONS_PER_HOUR: '1000', FASTCHAT_MAX_POLLS_PER_USER: '3'})
  })
  after(async () => server.close())

  it('limits logins per account with 429 and Retry-After, whatever the password', async () => {
    const user = await registerAndLogin(server.url, uniqueName('login')) // one login used
    const answers = []
    for (let i = 0; i < 3; i++) answers.push(await http('POST', `${server.url}/v1/sessions`, {json: {username: user.username, password: i ? 'wrong password' : PASSWORD}}))
    expect(answers.map((a) => a.status)).to.deep.equal([201, 401, 429])
    expectRateLimited(answers[2]!)
    // Even the right password waits now: a guesser cannot tell.
    expectRateLimited(await http('POST', `${server.url}/v1/sessions`, {json: {username: user.username, password: PASSWORD}}))
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
