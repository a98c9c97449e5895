import {readFile} from 'node:fs/promises'

import {expect} from 'chai'

import {encryptText, sealReceipt, unlockPrivateKey, type UnlockedKey} from '../../crypto/index.js'
import type {RunningChatServer} from '../../server/main.js'
import {DIRECT_SEND_STATEMENTS} from '../../storage/repositories/message.repository.js'
import {fakeCiphertext, joinGroup, poll, registerAndLogin, send, type TestUser, uniqueName} from '../helpers/api.js'
import {CliUser, PASSPHRASE, startTwoUserCluster, stopTwoUserCluster, type TwoUserCluster} from '../helpers/cli.js'
import {CLUSTER_AUTH, startTestServer} from '../helpers/cluster.js'
import {http} from '../helpers/http.js'
import {eventually} from '../helpers/processes.js'

/*
 * Issue 16, part 2: delivered and read receipts. Delivered: a recipient's
 * poll past a message (its cursor) makes a `receipt.delivered` event in the
 * sender's stream, across chat servers. Read: clients relay end-to-end
 * encrypted receipts through POST /v1/receipts as `receipt.read` events.
 * Here at the HTTP level, as a curl user sees them.
 */

interface Event {
  seq: number
  type: string
  from?: string
  id?: string
  ciphertext?: string
  /** receipt.delivered: {by, messages}; receipt.read: {from, ciphertext}. */
  receipts?: {by?: string; messages?: string[]; from?: string; ciphertext?: string}[]
}

describe('receipts (HTTP API)', function () {
  this.timeout(60_000)
  let a: RunningChatServer
  let b: RunningChatServer
  let alice: TestUser
  let bob: TestUser
  let carol: TestUser

  const call = (user: TestUser, method: string, path: string, json?: unknown) => http(method, `${user.server}${path}`, {json, headers: user.auth})
  const events = async (user: TestUser, since = 0) => (await poll(user, since)).body.events as Event[]
  /** Every message id `by` was reported to have got, in `user`'s stream. */
  const deliveredBy = (list: Event[], by: string) =>
    list.filter((event) => event.type === 'receipt.delivered').flatMap((event) => event.receipts!.filter((r) => r.by === by).flatMap((r) => r.messages!))
  /** The read receipts in `user`'s stream, as [from, ciphertext], event by event. */
  const readReceiptsIn = (list: Event[]) => list.filter((event) => event.type === 'receipt.read').map((event) => event.receipts!.map((r) => [r.from, r.ciphertext]))
  const readReceipts = (user: TestUser, receipts: unknown) => call(user, 'POST', '/v1/receipts', {receipts})

  before(async () => {
    // Flushes every 20 ms: the receipts come quickly, by the same code as in production.
    ;[a, b] = await Promise.all([startTestServer(undefined, {FASTCHAT_RECEIPT_FLUSH_MS: '20'}), startTestServer(undefined, {FASTCHAT_RECEIPT_FLUSH_MS: '20'})])
  })
  after(async () => {
    await Promise.all([a.close(), b.close()])
  })
  beforeEach(async () => {
    ;[alice, bob, carol] = await Promise.all([
      registerAndLogin(a.url, uniqueName('alice'), 'alice'),
      registerAndLogin(b.url, uniqueName('bob'), 'bob'),
      registerAndLogin(b.url, uniqueName('carol'), 'carol'),
    ])
  })

  it('a poll past a message on one server puts receipt.delivered in the sender stream on the other', async () => {
    const sent = await send(alice, bob.username, fakeCiphertext(1))
    expect(sent.status).to.equal(201)
    const [message] = (await events(bob)).filter((event) => event.type === 'message')
    expect(message!.id).to.equal(sent.body.id)
    // Only receiving it acknowledges nothing: the cursor has not passed it yet.
    expect(deliveredBy(await events(alice), bob.username)).to.deep.equal([])
    await poll(bob, message!.seq)
    const receipts = await eventually(async () => {
      const ids = deliveredBy(await events(alice), bob.username)
      return ids.length > 0 && ids
    }, 'a delivered receipt for alice')
    expect(receipts).to.deep.equal([sent.body.id])
  })

  it('acknowledges only what the cursor passed: a cursor ahead of the head acknowledges nothing', async () => {
    const first = await send(alice, bob.username, fakeCiphertext(1))
    const second = await send(alice, bob.username, fakeCiphertext(2))
    const got = (await events(bob)).filter((event) => event.type === 'message')
    expect(got.map((event) => event.id)).to.deep.equal([first.body.id, second.body.id])
    // A look with ack=false (send --wait's) acknowledges nothing either.
    const peek = await http('GET', `${bob.server}/v1/events?since=${got[1]!.seq}&timeout=0&ack=false`, {headers: bob.auth})
    expect(peek.status).to.equal(200)
    expect((await http('GET', `${bob.server}/v1/events?since=0&ack=maybe`, {headers: bob.auth})).status).to.equal(400)
    const ahead = await poll(bob, got[1]!.seq + 50)
    expect(ahead.status).to.equal(409)
    expect(ahead.body.code).to.equal('FC_CURSOR_AHEAD')
    // Now a real acknowledgement of the first only: had the refused poll counted, the second would be receipted too.
    await poll(bob, got[0]!.seq)
    await eventually(async () => deliveredBy(await events(alice), bob.username).length > 0, 'the first receipt')
    expect(deliveredBy(await events(alice), bob.username)).to.deep.equal([first.body.id])
  })

  it('a stream acknowledges what it wrote', async () => {
    const sent = await send(alice, bob.username, fakeCiphertext(1))
    const controller = new AbortController()
    const response = await fetch(`${bob.server}/v1/events?since=0`, {headers: {...bob.auth, accept: 'text/event-stream'}, signal: controller.signal})
    expect(response.status).to.equal(200)
    try {
      await eventually(async () => deliveredBy(await events(alice), bob.username).includes(sent.body.id), 'a receipt from the stream')
    } finally {
      controller.abort()
      await response.body?.cancel().catch(() => undefined)
    }
  })

  it('group messages are receipted per member', async () => {
    const created = await call(alice, 'POST', '/v1/groups', {name: 'receipts', members: [bob.username, carol.username]})
    expect(created.status).to.equal(201)
    const group = created.body.id as string
    const epoch = await joinGroup(group, [bob, carol])
    const keys = Object.fromEntries([alice, bob, carol].map((m) => [m.username, fakeCiphertext(m.username)]))
    expect((await call(alice, 'PUT', `/v1/groups/${group}/keys/${epoch}`, {keys})).status).to.equal(204)
    const sent = await call(alice, 'POST', '/v1/messages', {to: {group}, epoch, kind: 'text', ciphertext: fakeCiphertext('g')})
    expect(sent.status, JSON.stringify(sent.body)).to.equal(201)
    for (const member of [bob, carol]) {
      const list = await events(member)
      await poll(member, list[list.length - 1]!.seq)
    }
    await eventually(async () => {
      const list = await events(alice)
      return deliveredBy(list, bob.username).includes(sent.body.id) && deliveredBy(list, carol.username).includes(sent.body.id)
    }, 'receipts from both members')
  })

  it('relays read receipts as receipt.read, drops those to a user who blocks the reader, and checks its input', async () => {
    const receipt = fakeCiphertext('read')
    expect((await readReceipts(bob, [{to: alice.username, ciphertext: receipt}])).status).to.equal(204)
    let list = await events(alice)
    expect(readReceiptsIn(list)).to.deep.equal([[[bob.username, receipt]]])

    // Alice blocks carol: carol's receipt is accepted (she cannot tell) and dropped; bob's, sent after it, arrives alone.
    expect((await call(alice, 'POST', '/v1/blocks', {username: carol.username})).status).to.equal(201)
    expect((await readReceipts(carol, [{to: alice.username, ciphertext: fakeCiphertext('carol')}])).status).to.equal(204)
    expect((await readReceipts(bob, [{to: alice.username, ciphertext: fakeCiphertext('again')}])).status).to.equal(204)
    list = await events(alice)
    expect(readReceiptsIn(list).flat().map(([from]) => from)).to.deep.equal([bob.username, bob.username])

    const problems = [
      [[], 400],
      [Array.from({length: 101}, () => ({to: alice.username, ciphertext: receipt})), 400],
      [[{to: alice.username, ciphertext: 'not armored'}], 400],
      [[{to: alice.username, ciphertext: fakeCiphertext('x'.repeat(9 * 1024))}], 400],
      [[{to: alice.username, ciphertext: receipt, extra: 1}], 400],
      [[{to: 'no such user!', ciphertext: receipt}], 400],
    ] as const
    for (const [receipts, status] of problems) {
      const answer = await readReceipts(bob, receipts)
      expect(answer.status, JSON.stringify(answer.body)).to.equal(status)
      expect(answer.headers.get('content-type')).to.match(/application\/problem\+json/)
      expect(answer.body.code).to.equal('FC_VALIDATION')
    }
    // An unknown user: 404, and nothing is appended for the known one in the same request.
    const unknown = await readReceipts(bob, [
      {to: alice.username, ciphertext: fakeCiphertext('lost')},
      {to: uniqueName('nobody'), ciphertext: receipt},
    ])
    expect(unknown.status).to.equal(404)
    expect(unknown.body.code).to.equal('FC_USER_NOT_FOUND')
    expect(readReceiptsIn(await events(alice)).flat()).to.have.length(2)
    expect((await http('POST', `${a.url}/v1/receipts`, {json: {receipts: [{to: alice.username, ciphertext: receipt}]}})).status).to.equal(401)
  })

  it('a hostile account cannot flood streams with receipts: each one costs a send against the rate limit', async () => {
    const limited = await startTestServer(undefined, {FASTCHAT_RATE_LIMITS: 'on', FASTCHAT_SENDS_PER_10S: '5'})
    try {
      const mallory = await registerAndLogin(limited.url, uniqueName('mallory'), 'mallory')
      const three = Array.from({length: 3}, () => ({to: alice.username, ciphertext: fakeCiphertext('flood')}))
      expect((await readReceipts(mallory, three)).status).to.equal(204)
      // 3 + 3 > 5 per 10 s: the second request is refused before anything is appended.
      const refused = await readReceipts(mallory, three)
      expect(refused.status).to.equal(429)
      expect(refused.body.code).to.equal('FC_RATE_LIMITED')
      expect(readReceiptsIn(await events(alice)).flat()).to.have.length(3)
    } finally {
      await limited.close()
    }
  })

  it('gathers read receipts to one user: a lone one goes at once, those within its window share one event, each 204 once committed', async () => {
    // The window is FASTCHAT_RECEIPT_FLUSH_MS; long here, so that two requests sent together surely fall in one.
    const slow = await startTestServer(undefined, {FASTCHAT_RECEIPT_FLUSH_MS: '2000'})
    try {
      const [dana, erin, frank, gina] = await Promise.all(['dana', 'erin', 'frank', 'gina'].map((name) => registerAndLogin(slow.url, uniqueName(name))))
      const lone = fakeCiphertext('lone')
      expect((await readReceipts(erin, [{to: dana.username, ciphertext: lone}])).status).to.equal(204)
      // Answered once committed: the event is there for the very next look.
      expect(readReceiptsIn(await events(dana))).to.deep.equal([[[erin.username, lone]]])

      // Within dana's window: held, then one event for both (the 204s wait for it); gina got none yet, so hers goes at once.
      const [fromErin, fromFrank, forGina] = [fakeCiphertext('erin'), fakeCiphertext('frank'), fakeCiphertext('gina')]
      const answers = await Promise.all([
        readReceipts(erin, [{to: dana.username, ciphertext: fromErin}]),
        readReceipts(frank, [
          {to: dana.username, ciphertext: fromFrank},
          {to: gina.username, ciphertext: forGina},
        ]),
      ])
      expect(answers.map((answer) => answer.status)).to.deep.equal([204, 204])
      const danas = readReceiptsIn(await events(dana))
      expect(danas).to.have.length(2)
      expect(danas[1]!.sort()).to.deep.equal(
        [
          [erin.username, fromErin],
          [frank.username, fromFrank],
        ].sort(),
      )
      expect(readReceiptsIn(await events(gina))).to.deep.equal([[[frank.username, forGina]]])
    } finally {
      await slow.close()
    }
  })

  it("receipts to a user who listens on the other server are appended by that server, and reach her there", async () => {
    const routed = async (server: string) => {
      const {body} = await http<string>('GET', `${server}/metrics`, {headers: CLUSTER_AUTH})
      const count = (where: string) => Number(new RegExp(`^fastchat_server_receipt_events_total\\{where="${where}"\\} (\\d+)$`, 'm').exec(body)?.[1] ?? 0)
      return {peer: count('peer'), here: count('here'), fallback: count('fallback')}
    }
    // Alice (on a) has polled a: her presence there is what b finds. Bob is on b.
    const sent = await send(alice, bob.username, fakeCiphertext('hi'))
    await poll(alice, 0)
    const before = await routed(b.url)
    // Bob reads her message: his poll past it (a delivered receipt) and his read receipt, both taken by b.
    const [message] = (await events(bob)).filter((event) => event.type === 'message')
    await poll(bob, message!.seq)
    const receipt = fakeCiphertext('read on b')
    expect((await readReceipts(bob, [{to: alice.username, ciphertext: receipt}])).status).to.equal(204)
    const list = await eventually(async () => {
      const got = await events(alice)
      return deliveredBy(got, bob.username).includes(sent.body.id) && readReceiptsIn(got).length > 0 && got
    }, 'both receipts in alice\'s stream')
    expect(readReceiptsIn(list)).to.deep.equal([[[bob.username, receipt]]])
    const after = await routed(b.url)
    expect(after.peer - before.peer, 'appended by a, alice\'s server').to.equal(2)
    expect([after.here - before.here, after.fallback - before.fallback]).to.deep.equal([0, 0])
  })

  it("gathers on the recipient's server: read receipts to her through both servers within her window share one event", async () => {
    // Long windows, so that what is sent together surely falls in one; FASTCHAT_DELIVERY_RECEIPTS=off: only read receipts here.
    const env = {FASTCHAT_RECEIPT_FLUSH_MS: '2000', FASTCHAT_DELIVERY_RECEIPTS: 'off'}
    const [slowA, slowB] = await Promise.all([startTestServer(undefined, env), startTestServer(undefined, env)])
    try {
      const [dana, erin, frank, gina] = await Promise.all([
        registerAndLogin(slowA.url, uniqueName('dana')),
        registerAndLogin(slowA.url, uniqueName('erin')),
        registerAndLogin(slowB.url, uniqueName('frank')),
        registerAndLogin(slowB.url, uniqueName('gina')),
      ])
      // Dana listens on a (her presence there is what b finds); gina's lone receipt starts her window.
      await poll(dana, 0)
      const lone = fakeCiphertext('lone')
      expect((await readReceipts(gina, [{to: dana.username, ciphertext: lone}])).status).to.equal(204)
      const [fromErin, fromFrank] = [fakeCiphertext('erin on a'), fakeCiphertext('frank on b')]
      const answers = await Promise.all([readReceipts(erin, [{to: dana.username, ciphertext: fromErin}]), readReceipts(frank, [{to: dana.username, ciphertext: fromFrank}])])
      expect(answers.map((answer) => answer.status)).to.deep.equal([204, 204])
      const danas = readReceiptsIn(await events(dana))
      expect(danas).to.have.length(2)
      expect(danas[0]).to.deep.equal([[gina.username, lone]])
      expect(danas[1]!.sort()).to.deep.equal(
        [
          [erin.username, fromErin],
          [frank.username, fromFrank],
        ].sort(),
      )
    } finally {
      await Promise.all([slowA.close(), slowB.close()])
    }
  })

  it('the 1:1 send statements are untouched: receipts add nothing to a send when none wait to ride along, and no query of their own', () => {
    for (const [name, sql] of Object.entries({one: DIRECT_SEND_STATEMENTS.one, batch: DIRECT_SEND_STATEMENTS.batch})) {
      expect(sql, name).to.match(/INSERT INTO messages/)
      expect(sql, name).not.to.match(/acks|delivered_at|receipt|payload/i)
    }
    // Read receipts ride along in the statement the sends run anyway (batched-commits.test.ts counts the statements).
    expect(DIRECT_SEND_STATEMENTS.batchWithEvents).to.match(/INSERT INTO messages[\s\S]*jsonb_array_elements/)
  })
})

describe('receipts (CLI)', function () {
  this.timeout(90_000)
  let cluster: TwoUserCluster
  let alice: CliUser
  let bob: CliUser
  let carol: CliUser
  let dave: CliUser

  const inboxJson = (user: CliUser, args: string[] = []) =>
    user.json<{messages: {id: string; text: string}[]; receipts: {status: string; by: string; messages: string[]; verification?: {status: string}}[]}>(['inbox', ...args])
  const historyJson = (user: CliUser, peer: string) => user.json<{messages: {id: string; from: string; status?: string; receipts?: {readBy: string[]; members?: number}}[]}>(['history', peer])

  before(async () => {
    cluster = await startTwoUserCluster()
    ;({alice, bob} = cluster)
    carol = await CliUser.create('carol', cluster.superserver.url)
    dave = await CliUser.create('dave', cluster.superserver.url)
    await Promise.all([carol.register(), dave.register()])
  })
  after(async () => {
    await stopTwoUserCluster(cluster)
  })

  it('send --wait delivered returns once bob has fetched it; bob\'s inbox sends a verified read receipt; history shows ✓ and ✓✓', async () => {
    const profiles = await Promise.all([alice, bob].map((user) => user.readJson('profile.json')))
    expect(profiles[0].server).not.to.equal(profiles[1].server)
    // Alice waits while bob has not looked yet; bob's inbox is what delivers it.
    const waiting = alice.run(['send', bob.username, 'did you get this?', '--wait', 'delivered', '--timeout', '20s', '--json'])
    await eventually(async () => Object.keys((await alice.readJson('receipts.json').catch(() => undefined))?.sent ?? {}).length > 0, 'alice to have sent')
    const shown = await inboxJson(bob)
    expect(shown.messages.map((m) => m.text)).to.deep.equal(['did you get this?'])
    const waited = await waiting
    expect(waited.code, waited.stderr).to.equal(0)
    const sent = JSON.parse(waited.stdout)
    expect(sent.receipt).to.deep.equal({status: 'delivered', by: bob.username})

    // Bob's inbox also sent a read receipt, end-to-end encrypted: alice's client verifies it against bob's pinned key.
    const received = await inboxJson(alice)
    const read = received.receipts.filter((r) => r.status === 'read')
    expect(read).to.have.length(1)
    expect(read[0]).to.deep.include({by: bob.username, messages: [sent.id]})
    expect(read[0]!.verification!.status).to.equal('valid')
    // Sealed to alice (crypto/receipts.ts), not an OpenPGP message: what the server relayed is a quarter the size.
    const stream = await http('GET', `${profiles[0].server}/v1/events?since=0&timeout=0`, {headers: {authorization: `Bearer ${profiles[0].token}`}})
    const relayed = stream.body.events.filter((e: {type: string}) => e.type === 'receipt.read').flatMap((e: {receipts: {ciphertext: string}[]}) => e.receipts)
    expect(relayed).to.have.length(1)
    expect(relayed[0].ciphertext).to.match(/^fcr1\.[A-Za-z0-9_-]+$/)
    expect(relayed[0].ciphertext.length).to.be.below(300)
    const unread = await alice.json(['send', carol.username, 'not read yet'])
    const [withBob, withCarol] = await Promise.all([historyJson(alice, bob.username), historyJson(alice, carol.username)])
    expect(withBob.messages.find((m) => m.id === sent.id)!.status).to.equal('read')
    expect(withCarol.messages.find((m) => m.id === unread.id)!.status).to.equal('sent')
    const shownHistory = await alice.run(['history', bob.username])
    expect(shownHistory.stdout).to.match(/did you get this\?.*✔ verified {2}✓✓ read/)
    const shownCarol = await alice.run(['history', carol.username])
    expect(shownCarol.stdout).to.match(/not read yet.*✓ sent$/m)
  })

  it('send --wait read gives up after --timeout with exit 3 and one line', async () => {
    const result = await alice.run(['send', dave.username, 'nobody reads this', '--wait', 'read', '--timeout', '800ms'])
    expect(result.code, result.stderr).to.equal(3)
    expect(result.stdout).to.match(/^Sent to /)
    expect(result.stderr).to.match(/^Error: No read receipt for message [0-9a-f-]{36} within 800ms\./m)
    expect(result.stderr).not.to.match(/\n\s+at /)
  })

  it('--no-read-receipts sends none, and history shows ✓✓ delivered without an inbox first', async () => {
    const sent = await alice.json(['send', bob.username, 'quietly'])
    const quiet = await inboxJson(bob, ['--no-read-receipts'])
    expect(quiet.messages.map((m) => m.text)).to.deep.equal(['quietly'])
    // History takes in the receipts waiting in alice's stream itself, leaving its messages to `inbox`.
    await eventually(async () => (await historyJson(alice, bob.username)).messages.find((m) => m.id === sent.id)!.status === 'delivered', 'history to say delivered')
    expect((await alice.run(['history', bob.username])).stdout).to.match(/quietly.*✓✓ delivered$/m)
    // A read receipt would be in alice's stream before the delivered one (bob's client sends it before its next poll acknowledges).
    const receipts = (await inboxJson(alice)).receipts
    expect(receipts.some((r) => r.status === 'delivered' && r.messages.includes(sent.id)), 'the delivered receipt is still in the stream for inbox').to.equal(true)
    expect(receipts.filter((r) => r.status === 'read' && r.messages.includes(sent.id))).to.deep.equal([])
  })

  it('a group message read by 2 of 3 members shows "read by 2 of 3"', async () => {
    const name = uniqueName('g')
    const created = await alice.json(['group', 'create', name, '--member', bob.username, '--member', carol.username, '--member', dave.username])
    for (const member of [bob, carol, dave]) await member.json(['group', 'join', created.id])
    const sent = await alice.json(['send', created.id, 'read me'])
    await Promise.all([inboxJson(bob), inboxJson(carol)])
    const history = await eventually(async () => {
      await inboxJson(alice)
      const page = await historyJson(alice, created.id)
      const mine = page.messages.find((m) => m.id === sent.id)!
      return mine.receipts!.readBy.length === 2 && mine
    }, 'two read receipts')
    expect(history.receipts!.readBy).to.have.members([bob.username, carol.username])
    expect(history.receipts!.members).to.equal(3)
    expect((await alice.run(['history', created.id])).stdout).to.match(/read me.*✓✓ read by 2 of 3$/m)
  })

  /**
   * A receipt to alice for `sent` (sent to `to`) made with carol's key, sealed or signed by `make`, posted from
   * bob's account: the server relays it as bob's, as an operator who knows the message id could. What alice's
   * inbox reports of it.
   */
  async function relayedAsBob(sent: {id: string}, to: CliUser, make: (text: string, carolKey: UnlockedKey, alicePublic: string) => Promise<string>) {
    const carolKey = await unlockPrivateKey(await readFile(carol.file('private-key.asc'), 'utf8'), PASSPHRASE)
    const alicePublic = await readFile(alice.file('public-key.asc'), 'utf8')
    const text = JSON.stringify({v: 1, type: 'read', to: alice.username, messages: [sent.id], conversation: {user: to.username}})
    const forged = await make(text, carolKey, alicePublic)
    const bobProfile = await bob.readJson('profile.json')
    const posted = await http('POST', `${bobProfile.server}/v1/receipts`, {json: {receipts: [{to: alice.username, ciphertext: forged}]}, headers: {authorization: `Bearer ${bobProfile.token}`}})
    expect(posted.status).to.equal(204)
    const page = await eventually(async () => {
      const shown = await inboxJson(alice)
      return shown.receipts.some((r) => r.status === 'read' && r.by === bob.username) && shown
    }, 'the relayed receipt')
    return page.receipts.find((r) => r.status === 'read' && r.by === bob.username)!
  }

  it('a read receipt signed by someone else than its sender is not verified, and not counted', async () => {
    const sent = await alice.json(['send', carol.username, 'for carol only'])
    const reported = await relayedAsBob(sent, bob, (text, carolKey, alicePublic) => encryptText({text, to: [alicePublic], signer: carolKey}))
    expect(reported.verification!.status).not.to.equal('valid')
    const history = await historyJson(alice, carol.username)
    expect(history.messages.find((m) => m.id === sent.id)!.status).to.equal('sent')
  })

  it('a sealed read receipt relayed as someone else\'s does not open, and is not counted', async () => {
    const sent = await alice.json(['send', dave.username, 'for dave only'])
    // Sealed between carol and alice, it does not open as bob's.
    const reported = await relayedAsBob(sent, dave, (text, carolKey, alicePublic) => sealReceipt({text, reader: carolKey, to: alicePublic}))
    expect(reported.verification!.status).to.equal('undecryptable')
    expect(reported.messages).to.deep.equal([])
    const history = await historyJson(alice, dave.username)
    expect(history.messages.find((m) => m.id === sent.id)!.status).to.equal('sent')
  })
})
