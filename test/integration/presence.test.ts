import {expect} from 'chai'

import type {RunningChatServer} from '../../server/main.js'
import type {RunningSuperserver} from '../../superserver/main.js'
import {fakeCiphertext, joinGroup, login, poll, registerAndLogin, send, type TestUser, uniqueName} from '../helpers/api.js'
import {CliUser, expectOneLineError, removeCliHomes} from '../helpers/cli.js'
import {startTestServer, startTestSuperserver, waitForHealthy} from '../helpers/cluster.js'
import {http} from '../helpers/http.js'
import {eventually} from '../helpers/processes.js'

/*
 * Issue 16, part 3: presence. `fastchat who` shows which contacts are online
 * or when they were last seen, only to people they talk with; `presence off`
 * hides it from everyone; changes are `presence` events, coalesced so that a
 * client re-polling all the time announces itself once. Two chat servers with
 * a short offline delay, so that "offline" happens within a test.
 */

/** FASTCHAT_PRESENCE_OFFLINE_MS for these servers: presence rows are refreshed every 500 ms, sweeps run every 375 ms. */
const OFFLINE_MS = 1_500
/** Bound on waiting for an offline announcement: the delay, a sweep, and a loaded two-core machine. */
const OFFLINE_WAIT_MS = OFFLINE_MS + 8_000

interface PresenceEvent {
  seq: number
  type: 'presence'
  user: string
  presence: 'online' | 'offline'
  lastSeen: string | null
  at: string
}

describe('presence (who, presence on|off, presence events)', function () {
  this.timeout(60_000)
  let superserver: RunningSuperserver
  let servers: RunningChatServer[]
  let alice: CliUser
  let bob: CliUser
  let aliceApi: TestUser
  let bobApi: TestUser
  let carol: TestUser
  let dave: TestUser
  let mallory: TestUser
  /** Everything alice's stream got, read by a poller that keeps her listening. */
  const heard: PresenceEvent[] = []
  let listening = true
  let listener: Promise<void>

  const presenceOf = async (viewer: TestUser, ...names: string[]) => {
    const answer = await http('GET', `${viewer.server}/v1/presence?users=${names.map(encodeURIComponent).join(',')}`, {headers: viewer.auth})
    expect(answer.status, JSON.stringify(answer.body)).to.equal(200)
    return answer.body.users as {username: string; presence: string; lastSeen?: string | null}[]
  }
  const stateOf = async (viewer: TestUser, name: string) => (await presenceOf(viewer, name))[0]!
  const heardOf = (user: string) => heard.filter((event) => event.user === user).map((event) => event.presence)
  /** One poll of `user`'s stream, as a client that is online does (it records presence). */
  const pollOnce = (user: TestUser, timeoutMs = 0) => poll(user, 0, timeoutMs, user.server, 1)
  /** Polls in a loop, as a client that reconnects at once after each answer, for `ms`. */
  const keepPolling = async (user: TestUser, ms: number) => {
    const until = Date.now() + ms
    let since = 0
    while (Date.now() < until) {
      const answer = await poll(user, since, 200, user.server, 100)
      expect(answer.status).to.equal(200)
      since = answer.body.next
    }
  }
  const userWith = async (server: RunningChatServer, prefix: string, key: 'carol' | 'mallory') => registerAndLogin(server.url, uniqueName(prefix), key)

  before(async () => {
    superserver = await startTestSuperserver()
    const env = {FASTCHAT_PRESENCE_OFFLINE_MS: String(OFFLINE_MS)}
    servers = await Promise.all([startTestServer(superserver.url, env), startTestServer(superserver.url, env)])
    await waitForHealthy(superserver.url, servers.map((s) => s.url))
    alice = await CliUser.create('alice', superserver.url)
    bob = await CliUser.create('bob', superserver.url)
    await alice.register()
    await bob.register()
    // They write to each other: each pins the other (alice's `who` lists her contacts) and may see the other's presence.
    for (const [from, to] of [
      [alice, bob],
      [bob, alice],
    ] as const) {
      const sent = await from.run(['send', to.username, 'hi'])
      expect(sent.code, sent.stderr).to.equal(0)
    }
    ;[aliceApi, bobApi] = await Promise.all([login(servers[0]!.url, alice.username), login(servers[1]!.url, bob.username)])
    ;[carol, dave, mallory] = await Promise.all([userWith(servers[0]!, 'carol', 'carol'), userWith(servers[1]!, 'dave', 'carol'), userWith(servers[0]!, 'mallory', 'mallory')])
    // Dave and alice talk too: dave is the marker whose own offline event says a sweep ran.
    expect((await send(dave, alice.username, fakeCiphertext('d'))).status).to.equal(201)
    expect((await send(aliceApi, dave.username, fakeCiphertext('a'))).status).to.equal(201)
    listener = (async () => {
      let since = 0
      while (listening) {
        const answer = await poll(aliceApi, since, 300, aliceApi.server, 100)
        if (answer.status !== 200) throw new Error(`alice's poll: ${answer.status} ${JSON.stringify(answer.body)}`)
        heard.push(...(answer.body.events as {type: string}[]).filter((event): event is PresenceEvent => event.type === 'presence'))
        since = answer.body.next
      }
    })()
  })

  after(async () => {
    listening = false
    await listener?.catch(() => undefined)
    await Promise.all((servers ?? []).map((s) => s.close()))
    await superserver?.close()
    await removeCliHomes()
  })

  it('a contact who polls is online to alice (`who --json`), and her stream hears it once', async () => {
    expect(await stateOf(aliceApi, bob.username)).to.include({presence: 'offline'})
    expect((await pollOnce(bobApi)).status).to.equal(200)
    await eventually(async () => (await stateOf(aliceApi, bob.username)).presence === 'online', 'bob online to alice')
    // Bob's client stays online while alice's CLI starts and asks (which can take longer than the offline delay on a loaded machine).
    const stillOnline = keepPolling(bobApi, OFFLINE_MS)
    const who = await alice.json<{users: {username: string; presence: string; lastSeen: string}[]}>(['who'])
    await stillOnline
    expect(who.users).to.have.length(1)
    expect(who.users[0]).to.include({username: bob.username, presence: 'online'})
    expect(Date.parse(who.users[0]!.lastSeen)).to.be.closeTo(Date.now(), 30_000)
    await eventually(async () => heardOf(bob.username).length > 0, 'the online event')
    // Once (bob's offline event may follow already: he polled once, and the CLI's `who` above can take longer
    // than the offline delay on a loaded machine).
    expect(heardOf(bob.username)[0]).to.equal('online')
    expect(heardOf(bob.username).filter((presence) => presence === 'online')).to.deep.equal(['online'])
    const [event] = heard.filter((e) => e.user === bob.username)
    expect(event).to.include({type: 'presence', user: bob.username, presence: 'online'})
    expect(Date.parse(event!.at)).to.be.a('number').and.not.NaN
  })

  it('once bob stops, he is offline with a last seen after the delay, and alice heard exactly online then offline', async () => {
    const offline = await eventually(
      async () => {
        const state = await stateOf(aliceApi, bob.username)
        return state.presence === 'offline' && state
      },
      'bob offline to alice',
      OFFLINE_WAIT_MS,
    )
    expect(Date.parse(offline.lastSeen!)).to.be.closeTo(Date.now(), 30_000)
    await eventually(async () => heardOf(bob.username).length >= 2, 'the offline event', OFFLINE_WAIT_MS)
    expect(heardOf(bob.username)).to.deep.equal(['online', 'offline'])
    expect(heard.filter((e) => e.user === bob.username)[1]!.lastSeen).to.equal(offline.lastSeen)
    const shown = await alice.run(['who'])
    expect(shown.code, shown.stderr).to.equal(0)
    expect(shown.stdout.trim()).to.match(new RegExp(`^${bob.username}  last seen (just now|1 min ago)$`))
  })

  it('a client re-polling for three offline delays is announced once, not at every reconnection', async () => {
    const before = heardOf(bob.username).length
    await keepPolling(bobApi, 3 * OFFLINE_MS + 500)
    expect(heardOf(bob.username).slice(before), 'while bob kept polling').to.deep.equal(['online'])
    await eventually(async () => heardOf(bob.username).length > before + 1, 'the offline event', OFFLINE_WAIT_MS)
    expect(heardOf(bob.username).slice(before)).to.deep.equal(['online', 'offline'])
  })

  it('presence off: alice sees "hidden", no last seen, and hears nothing of bob; on again shows him from his next poll', async () => {
    // Hidden while online: contacts are not told "offline", nor anything later.
    const before = heardOf(bob.username).length + 1
    expect((await pollOnce(bobApi)).status).to.equal(200)
    await eventually(async () => heardOf(bob.username).length === before, 'bob online')
    expect(await bob.json(['presence', 'off'])).to.deep.equal({visible: false, presence: 'hidden'})
    expect(await bob.json(['presence', 'show'])).to.deep.equal({visible: false, presence: 'hidden'})
    // Bob polls while hidden, then dave: dave's offline event comes from a sweep after bob's would have.
    await keepPolling(bobApi, 700)
    expect(await stateOf(aliceApi, bob.username)).to.deep.equal({username: bob.username, presence: 'hidden'})
    expect((await pollOnce(dave)).status).to.equal(200)
    await eventually(async () => heardOf(dave.username).includes('offline'), "dave's offline event", OFFLINE_WAIT_MS)
    expect(heardOf(bob.username).length, 'nothing announced about a hidden user').to.equal(before)
    const who = await alice.json<{users: {username: string; presence: string}[]}>(['who'])
    expect(who.users).to.deep.equal([{username: bob.username, presence: 'hidden'}])
    const shown = await alice.run(['who'])
    expect(shown.stdout.trim()).to.equal(`${bob.username}  hidden`)

    const on = await bob.json<{visible: boolean; presence: string; lastSeen: string | null}>(['presence', 'on'])
    expect(on).to.include({visible: true, presence: 'offline'})
    // Nothing of the hidden time shows: no last seen until his next poll is recorded.
    expect(await stateOf(aliceApi, bob.username)).to.deep.equal({username: bob.username, presence: 'offline', lastSeen: null})
    await eventually(
      async () => {
        await pollOnce(bobApi)
        return (await stateOf(aliceApi, bob.username)).presence === 'online'
      },
      'bob online again',
    )
    await eventually(async () => heardOf(bob.username).length > before, 'the online event after presence on')
    expect(heardOf(bob.username).slice(before)).to.deep.equal(['online'])
  })

  it('shows "unknown" to someone bob never wrote to, for a name nobody has, and to someone bob blocks', async () => {
    const missing = uniqueName('nobody')
    expect(await presenceOf(carol, bob.username, missing, bob.username.toUpperCase())).to.deep.equal([
      {username: bob.username, presence: 'unknown'},
      {username: missing, presence: 'unknown'},
    ])
    // Writing to bob does not let mallory watch him: only his writing to her does.
    expect((await send(mallory, bob.username, fakeCiphertext('m'))).status).to.equal(201)
    expect(await stateOf(mallory, bob.username)).to.deep.equal({username: bob.username, presence: 'unknown'})
    expect((await send(bobApi, mallory.username, fakeCiphertext('b'))).status).to.equal(201)
    expect((await stateOf(mallory, bob.username)).presence).to.be.oneOf(['online', 'offline'])
    expect((await http('POST', `${bobApi.server}/v1/blocks`, {json: {username: mallory.username}, headers: bobApi.auth})).status).to.equal(201)
    expect(await stateOf(mallory, bob.username)).to.deep.equal({username: bob.username, presence: 'unknown'})
    // Bob still sees mallory's: her choice, not his.
    expect((await stateOf(bobApi, mallory.username)).presence).to.be.oneOf(['online', 'offline'])
  })

  it('announces nothing to someone bob blocks, though they wrote to each other and she listens', async () => {
    // Bob offline first, so that his next poll is a change.
    await eventually(async () => heardOf(bob.username).at(-1) === 'offline', 'bob offline', OFFLINE_WAIT_MS)
    const before = heardOf(bob.username).length
    let malloryListens = true
    const mallorysPolls = (async () => {
      while (malloryListens) expect((await poll(mallory, 0, 200, mallory.server, 1)).status).to.equal(200)
    })()
    try {
      await eventually(async () => (await http('GET', `${mallory.server}/v1/me/presence`, {headers: mallory.auth})).body.presence === 'online', 'mallory listening')
      expect((await pollOnce(bobApi)).status).to.equal(200)
      await eventually(async () => heardOf(bob.username).length > before, "alice hears bob's online")
    } finally {
      malloryListens = false
      await mallorysPolls
    }
    // Appended to every listener in one transaction: had mallory been told, it would be in her stream now.
    const hers = (await poll(mallory, 0, 0, mallory.server, 1000)).body.events as {type: string; user?: string}[]
    expect(hers.filter((event) => event.type === 'presence' && event.user === bob.username)).to.deep.equal([])
  })

  it('members of one group see each other; an invitation is not membership', async () => {
    const created = await http('POST', `${aliceApi.server}/v1/groups`, {json: {name: 'presence', members: [carol.username]}, headers: aliceApi.auth})
    expect(created.status, JSON.stringify(created.body)).to.equal(201)
    expect(await stateOf(carol, alice.username)).to.deep.equal({username: alice.username, presence: 'unknown'})
    await joinGroup(created.body.id, [carol])
    expect(await stateOf(carol, alice.username)).to.include({presence: 'online'})
  })

  it('refuses bad input with problems: no names, too many, bad names, repeated parameters, bad settings', async () => {
    const get = (query: string, user: TestUser | null = carol) => http('GET', `${servers[0]!.url}/v1/presence${query}`, {headers: user?.auth ?? {}})
    const names = (n: number) => Array.from({length: n}, (_, i) => `user${i}x`).join(',')
    expect((await get(`?users=${names(200)}`)).status).to.equal(200)
    for (const query of ['', '?users=', `?users=${names(201)}`, '?users=a%20b', '?users=bob,,carol', '?users=x', `?users=${'y'.repeat(40)}`, '?users=a1b&users=c2d', '?users=abc&other=1']) {
      const answer = await get(query)
      expect(answer.status, query).to.equal(400)
      expect(answer.headers.get('content-type'), query).to.match(/^application\/problem\+json/)
      expect(answer.body.code, query).to.equal('FC_VALIDATION')
    }
    expect((await get('?users=abc', null)).status).to.equal(401)
    const put = (body: string, type = 'application/json') =>
      http('PUT', `${servers[0]!.url}/v1/me/presence`, {body, headers: {...carol.auth, 'content-type': type}})
    for (const body of ['{"visible":"no"}', '{}', '{"visible":true,"extra":1}', '[true]']) {
      const answer = await put(body)
      expect(answer.status, body).to.equal(400)
      expect(answer.body.code, body).to.be.oneOf(['FC_VALIDATION', 'FC_MALFORMED_JSON'])
    }
    expect((await put('visible=true', 'application/x-www-form-urlencoded')).status).to.equal(415)
    expect((await http('GET', `${servers[0]!.url}/v1/me/presence`)).status).to.equal(401)
    const bad = await alice.run(['who', 'not a name!'])
    expect(bad.code).to.equal(1)
    expectOneLineError(bad)
  })
})
