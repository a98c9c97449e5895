import {readFile} from 'node:fs/promises'

import {expect} from 'chai'

import type {RunningChatServer} from '../../server/main.js'
import {fakeCiphertext, joinGroup, poll, registerAndLogin, send, type TestUser, uniqueName} from '../helpers/api.js'
import {startTestServer} from '../helpers/cluster.js'
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
  receipts?: {by: string; messages: string[]}[]
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
    list.filter((event) => event.type === 'receipt.delivered').flatMap((event) => event.receipts!.filter((r) => r.by === by).flatMap((r) => r.messages))
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

  it('a poll past a message on one server puts receipt.delivered in the sender stream on the other, and history says delivered', async () => {
    const sent = await send(alice, bob.username, fakeCiphertext(1))
    expect(sent.status).to.equal(201)
    const [message] = (await events(bob)).filter((event) => event.type === 'message')
    expect(message!.id).to.equal(sent.body.id)
    // Only receiving it acknowledges nothing: the cursor has not passed it yet.
    const before = await call(alice, 'GET', `/v1/conversations/${bob.username}`)
    expect(before.body.messages[0].delivered).to.equal(false)
    await poll(bob, message!.seq)
    const receipts = await eventually(async () => {
      const ids = deliveredBy(await events(alice), bob.username)
      return ids.length > 0 && ids
    }, 'a delivered receipt for alice')
    expect(receipts).to.deep.equal([sent.body.id])
    const history = await call(alice, 'GET', `/v1/conversations/${bob.username}`)
    expect(history.body.messages[0]).to.include({id: sent.body.id, delivered: true})
    // Bob's own view of the same message carries no delivered flag: it is not his.
    const his = await call(bob, 'GET', `/v1/conversations/${alice.username}`)
    expect(his.body.messages[0]).not.to.have.property('delivered')
  })

  it('acknowledges only what the cursor passed: a cursor ahead of the head acknowledges nothing', async () => {
    const first = await send(alice, bob.username, fakeCiphertext(1))
    const second = await send(alice, bob.username, fakeCiphertext(2))
    const got = (await events(bob)).filter((event) => event.type === 'message')
    expect(got.map((event) => event.id)).to.deep.equal([first.body.id, second.body.id])
    const ahead = await poll(bob, got[1]!.seq + 50)
    expect(ahead.status).to.equal(409)
    expect(ahead.body.code).to.equal('FC_CURSOR_AHEAD')
    // Now a real acknowledgement of the first only: had the refused poll counted, the second would be receipted too.
    await poll(bob, got[0]!.seq)
    await eventually(async () => deliveredBy(await events(alice), bob.username).length > 0, 'the first receipt')
    expect(deliveredBy(await events(alice), bob.username)).to.deep.equal([first.body.id])
    const history = await call(alice, 'GET', `/v1/conversations/${bob.username}`)
    expect(history.body.messages.map((m: {id: string; delivered: boolean}) => [m.id, m.delivered])).to.deep.equal([
      [second.body.id, false],
      [first.body.id, true],
    ])
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

  it('group messages are receipted per member, and are not marked delivered in history', async () => {
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
    const history = await call(alice, 'GET', `/v1/conversations/${group}`)
    expect(history.body.messages[0]).to.include({id: sent.body.id}).and.not.to.have.property('delivered')
  })

  it('relays read receipts as receipt.read, drops those to a user who blocks the reader, and checks its input', async () => {
    const receipt = fakeCiphertext('read')
    expect((await readReceipts(bob, [{to: alice.username, ciphertext: receipt}])).status).to.equal(204)
    let list = await events(alice)
    expect(list.filter((e) => e.type === 'receipt.read').map((e) => [e.from, e.ciphertext])).to.deep.equal([[bob.username, receipt]])

    // Alice blocks carol: carol's receipt is accepted (she cannot tell) and dropped; bob's, sent after it, arrives alone.
    expect((await call(alice, 'POST', '/v1/blocks', {username: carol.username})).status).to.equal(201)
    expect((await readReceipts(carol, [{to: alice.username, ciphertext: fakeCiphertext('carol')}])).status).to.equal(204)
    expect((await readReceipts(bob, [{to: alice.username, ciphertext: fakeCiphertext('again')}])).status).to.equal(204)
    list = await events(alice)
    expect(list.filter((e) => e.type === 'receipt.read').map((e) => e.from)).to.deep.equal([bob.username, bob.username])

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
    expect((await events(alice)).filter((e) => e.type === 'receipt.read')).to.have.length(2)
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
      expect((await events(alice)).filter((e) => e.type === 'receipt.read')).to.have.length(3)
    } finally {
      await limited.close()
    }
  })

  it('the 1:1 send statement is untouched: receipts add nothing to it', async () => {
    const source = await readFile(new URL('../../storage/repositories/message.repository.ts', import.meta.url), 'utf8')
    const statements = source.split(/\nconst STORE_DIRECT_/).slice(1).map((part) => part.split(/\n(?:const|export|\/\*\*) /)[0]!)
    expect(statements.length).to.be.greaterThan(0)
    for (const statement of statements) expect(statement).not.to.match(/acks|delivered_at|receipt/i)
  })
})
