import {expect} from 'chai'

import type {RunningChatServer} from '../../server/main.js'
import {fakeCiphertext, joinGroup, poll, registerAndLogin, send, type TestUser, uniqueName} from '../helpers/api.js'
import {startTestServer} from '../helpers/cluster.js'
import {type Answer, http} from '../helpers/http.js'

/*
 * Hole 6: `fastchat block NAME` is enforced by the server. A blocked user's
 * 1:1 messages and files are refused, they cannot put the blocker in a group,
 * and their group messages never reach the blocker's stream or history. The
 * block is made on one chat server and must hold on every other at once.
 */

const expectRefused = (answer: Answer) => {
  expect(answer.status, JSON.stringify(answer.body)).to.equal(403)
  expect(answer.body.code).to.equal('FC_NOT_ACCEPTED')
  // Neutral: the detail does not say "blocked".
  expect(answer.body.detail).not.to.match(/block/i)
}

describe('hole 6: blocking a user', function () {
  this.timeout(60_000)
  let a: RunningChatServer
  let b: RunningChatServer
  let alice: TestUser
  let bob: TestUser
  let carol: TestUser

  const on = (server: RunningChatServer, user: TestUser): TestUser => ({...user, server: server.url})
  const call = (user: TestUser, method: string, path: string, json?: unknown) => http(method, `${user.server}${path}`, {json, headers: user.auth})
  const block = (user: TestUser, name: string) => call(user, 'POST', '/v1/blocks', {username: name})
  const unblock = (user: TestUser, name: string) => call(user, 'DELETE', `/v1/blocks/${name}`)
  const messagesIn = async (user: TestUser) =>
    ((await poll(user, 0)).body.events as {type: string; from?: string; id?: string}[]).filter((event) => event.type === 'message')
  const upload = async (user: TestUser, bytes: string) => {
    const answer = await fetch(`${user.server}/v1/blobs`, {method: 'POST', headers: {...user.auth, 'content-type': 'application/octet-stream'}, body: bytes})
    expect(answer.status).to.equal(201)
    return ((await answer.json()) as {blob: string}).blob
  }
  /** A group whose invitees have joined, keyed at its current epoch (one per join). */
  const keyedGroup = async (admin: TestUser, members: TestUser[]) => {
    const created = await call(admin, 'POST', '/v1/groups', {name: 'friends', members: members.map((m) => m.username)})
    expect(created.status, JSON.stringify(created.body)).to.equal(201)
    const epoch = await joinGroup(created.body.id, members)
    const keys = Object.fromEntries([admin, ...members].map((m) => [m.username, fakeCiphertext(m.username)]))
    expect((await call(admin, 'PUT', `/v1/groups/${created.body.id}/keys/${epoch}`, {keys})).status).to.equal(204)
    return created.body.id as string
  }

  before(async () => {
    ;[a, b] = await Promise.all([startTestServer(), startTestServer()])
  })
  after(async () => {
    await Promise.all([a.close(), b.close()])
  })
  beforeEach(async () => {
    ;[alice, bob, carol] = await Promise.all([
      registerAndLogin(a.url, uniqueName('alice'), 'alice'),
      registerAndLogin(b.url, uniqueName('bob'), 'bob'),
      registerAndLogin(a.url, uniqueName('carol'), 'carol'),
    ])
  })

  it('hole 6: lists, adds and removes blocks; blocking twice or unblocking a stranger is harmless; yourself or nobody is refused', async () => {
    const first = await block(alice, bob.username.toUpperCase())
    expect(first.status).to.equal(201)
    expect(first.body).to.include({username: bob.username})
    expect(Date.parse(first.body.blockedAt)).to.be.closeTo(Date.now(), 60_000)
    expect((await block(alice, bob.username)).status).to.equal(200)
    expect((await block(alice, carol.username)).status).to.equal(201)
    const listed = await call(alice, 'GET', '/v1/blocks')
    expect(listed.status).to.equal(200)
    expect(listed.body.blocks.map((entry: {username: string}) => entry.username).sort()).to.deep.equal([bob.username, carol.username].sort())
    // Each user has their own list.
    expect((await call(bob, 'GET', '/v1/blocks')).body.blocks).to.deep.equal([])

    expect((await unblock(alice, carol.username)).status).to.equal(204)
    expect((await unblock(alice, carol.username)).status).to.equal(204)
    expect((await call(alice, 'GET', '/v1/blocks')).body.blocks.map((entry: {username: string}) => entry.username)).to.deep.equal([bob.username])

    const self = await block(alice, alice.username)
    expect(self.status).to.equal(400)
    expect(self.body.code).to.equal('FC_VALIDATION')
    expect((await block(alice, uniqueName('nobody'))).body.code).to.equal('FC_USER_NOT_FOUND')
    expect((await unblock(alice, uniqueName('nobody'))).status).to.equal(404)
    expect((await block(alice, 'no spaces allowed')).status).to.equal(400)
  })

  it('hole 6: refuses a blocked user\'s 1:1 messages and files on every server at once, stores nothing; unblocking lets them through', async () => {
    expect((await send(bob, alice.username, fakeCiphertext('before'))).status).to.equal(201)
    // Blocked on server a; bob sends through server b straight after.
    expect((await block(on(a, alice), bob.username)).status).to.equal(201)

    expectRefused(await send(on(b, bob), alice.username, fakeCiphertext('spam'), 'retry-key'))
    expectRefused(await send(on(a, bob), alice.username, fakeCiphertext('spam'), 'retry-key'))
    const blob = await upload(bob, 'encrypted picture')
    expectRefused(await call(bob, 'POST', '/v1/messages', {to: {user: alice.username}, kind: 'image', blob, ciphertext: ''}))
    // A file that only a refused message referenced stays the uploader's alone.
    expect((await call(alice, 'GET', `/v1/blobs/${blob}`)).status).to.equal(404)
    expect((await call(bob, 'GET', `/v1/blobs/${blob}`)).status).to.equal(200)

    const received = await messagesIn(alice)
    expect(received.map((event) => event.from)).to.deep.equal([bob.username])
    const history = await call(bob, 'GET', `/v1/conversations/${alice.username}`)
    expect(history.body.messages, 'nothing of the refused sends was stored').to.have.length(1)
    // Alice may still write to bob, and bob to others.
    expect((await send(alice, bob.username, fakeCiphertext('go away'))).status).to.equal(201)
    expect((await send(bob, carol.username, fakeCiphertext('hi carol'))).status).to.equal(201)

    expect((await unblock(on(b, alice), bob.username)).status).to.equal(204)
    const after = await send(on(a, bob), alice.username, fakeCiphertext('sorry'))
    expect(after.status).to.equal(201)
    expect((await messagesIn(alice)).map((event) => event.id)).to.include(after.body.id)
  })

  it('hole 6: a blocked user cannot create a group with the blocker or add them to one', async () => {
    expect((await block(alice, bob.username)).status).to.equal(201)
    const created = await call(bob, 'POST', '/v1/groups', {name: 'trap', members: [carol.username, alice.username]})
    expectRefused(created)
    expect((await call(alice, 'GET', '/v1/groups')).body.groups).to.deep.equal([])
    expect((await call(carol, 'GET', '/v1/groups')).body.groups, 'no group was made with the others either').to.deep.equal([])

    const group = await keyedGroup(bob, [carol])
    expectRefused(await call(bob, 'POST', `/v1/groups/${group}/members`, {username: alice.username}))
    expect((await call(bob, 'GET', `/v1/groups/${group}`)).body.members).to.have.length(2)
    // Someone else may add alice to a group bob is in: it is not bob adding her.
    const carols = await keyedGroup(carol, [bob])
    expect((await call(carol, 'POST', `/v1/groups/${carols}/members`, {username: alice.username})).status).to.equal(201)
  })

  it('hole 6: a blocked member\'s group messages and files reach the other members but not the blocker\'s stream or history', async () => {
    const group = await keyedGroup(carol, [alice, bob])
    const groupSend = (from: TestUser, json: Record<string, unknown>) => call(from, 'POST', '/v1/messages', {to: {group}, epoch: 3, ...json})
    const early = await groupSend(bob, {kind: 'text', ciphertext: fakeCiphertext('before the block')})
    expect(early.status).to.equal(201)

    expect((await block(on(b, alice), bob.username)).status).to.equal(201)
    const text = await groupSend(on(a, bob), {kind: 'text', ciphertext: fakeCiphertext('while blocked')})
    expect(text.status, 'the others still get it: the sender is not told').to.equal(201)
    const blob = await upload(bob, 'encrypted group picture')
    const image = await groupSend(bob, {kind: 'image', blob, ciphertext: ''})
    expect(image.status).to.equal(201)
    const fromCarol = await groupSend(carol, {kind: 'text', ciphertext: fakeCiphertext('carol speaking')})

    expect((await messagesIn(carol)).map((event) => event.id)).to.deep.equal([early.body.id, text.body.id, image.body.id])
    expect((await messagesIn(alice)).map((event) => event.id), "alice's stream").to.deep.equal([early.body.id, fromCarol.body.id])
    const aliceHistory = await call(alice, 'GET', `/v1/conversations/${group}`)
    expect(aliceHistory.body.messages.map((m: {from: string}) => m.from), "alice's history").to.deep.equal([carol.username])
    expect((await call(carol, 'GET', `/v1/conversations/${group}`)).body.messages).to.have.length(4)
    expect((await call(alice, 'GET', `/v1/blobs/${blob}`)).status, 'the blocked member\'s file').to.equal(404)
    expect((await call(carol, 'GET', `/v1/blobs/${blob}`)).status).to.equal(200)

    expect((await unblock(alice, bob.username)).status).to.equal(204)
    const later = await groupSend(bob, {kind: 'text', ciphertext: fakeCiphertext('after the block')})
    expect((await messagesIn(alice)).map((event) => event.id)).to.include(later.body.id)
  })
})
