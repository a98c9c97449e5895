import {expect} from 'chai'
import type {DataSource} from 'typeorm'

import type {RunningChatServer} from '../../server/main.js'
import {createDataSource} from '../../storage/data-source.js'
import {fakeCiphertext, joinGroup, poll, registerAndLogin, type TestUser, uniqueName} from '../helpers/api.js'
import {startTestServer} from '../helpers/cluster.js'
import {type Answer, http} from '../helpers/http.js'

/*
 * The server's side of groups, over HTTP with opaque ciphertext: membership,
 * roles, epochs, key sets and fan-out. The CLI suite (cli-groups.test.ts)
 * proves the cryptography end to end.
 */

const call = (user: TestUser, method: string, path: string, json?: unknown, server = user.server) =>
  http(method, `${server}${path}`, {json, headers: user.auth})

const sendToGroup = (user: TestUser, group: string, epoch: number, ciphertext: string, key?: string) =>
  http('POST', `${user.server}/v1/messages`, {
    json: {to: {group}, epoch, kind: 'text', ciphertext},
    headers: {...user.auth, ...(key ? {'idempotency-key': key} : {})},
  })

/** Uploads a (fake) key set for the group's current epoch, as `user`. */
async function keyCurrentEpoch(user: TestUser, group: string): Promise<Answer> {
  const info = await call(user, 'GET', `/v1/groups/${group}`)
  const keys = Object.fromEntries(info.body.members.map((m: {username: string}) => [m.username, fakeCiphertext(`key-${info.body.epoch}-${m.username}`)]))
  return call(user, 'PUT', `/v1/groups/${group}/keys/${info.body.epoch}`, {keys})
}

async function eventsOf(user: TestUser): Promise<any[]> {
  const answer = await poll(user, 0, 0, user.server, 1000)
  expect(answer.status).to.equal(200)
  return answer.body.events
}

describe('groups (HTTP API)', () => {
  let a: RunningChatServer
  let b: RunningChatServer
  let db: DataSource
  let alice: TestUser
  let bob: TestUser
  let carol: TestUser
  let dave: TestUser

  before(async () => {
    db = await createDataSource({url: process.env.DATABASE_URL!}).initialize()
    ;[a, b] = await Promise.all([startTestServer(), startTestServer()])
  })
  beforeEach(async () => {
    ;[alice, bob, carol, dave] = await Promise.all([
      registerAndLogin(a.url, uniqueName('alice'), 'alice'),
      registerAndLogin(b.url, uniqueName('bob'), 'bob'),
      registerAndLogin(a.url, uniqueName('carol'), 'carol'),
      registerAndLogin(b.url, uniqueName('dave'), 'mallory'),
    ])
  })
  after(async () => {
    await Promise.all([a.close(), b.close()])
    await db.destroy()
  })

  /** A group of alice's whose invitees have all joined (one epoch per join): the tests below are about members. */
  async function createGroup(members = [bob, carol]): Promise<string> {
    const created = await call(alice, 'POST', '/v1/groups', {name: 'friends', members: members.map((m) => m.username)})
    expect(created.status, JSON.stringify(created.body)).to.equal(201)
    expect(created.body).to.include({name: 'friends', epoch: 1})
    expect(await joinGroup(created.body.id, members)).to.equal(members.length + 1)
    return created.body.id
  }

  const epochOf = async (group: string): Promise<number> => (await call(alice, 'GET', `/v1/groups/${group}`)).body.epoch

  it('creates a group: the creator is admin and hears of it, invitees who join become members, and it lists with its roles', async () => {
    const created = await call(alice, 'POST', '/v1/groups', {name: 'friends', members: [bob.username, carol.username]})
    expect(created.status).to.equal(201)
    const group = created.body.id
    const [event] = await eventsOf(alice)
    expect(event).to.deep.include({type: 'group.created', group, name: 'friends', epoch: 1, by: alice.username, users: [alice.username]})
    expect(Date.now() - Date.parse(event.at), 'the event says when').to.be.within(0, 60_000)
    for (const user of [bob, carol]) {
      const events = await eventsOf(user)
      expect(events.map((e) => e.type), 'an invitee hears only of the invitation').to.deep.equal(['group.invited'])
      expect(events[0]).to.deep.include({group, name: 'friends', by: alice.username, users: []})
    }
    expect(await joinGroup(group, [bob, carol])).to.equal(3)
    const info = await call(bob, 'GET', `/v1/groups/${group}`)
    expect(info.status).to.equal(200)
    expect(info.body).to.include({id: group, name: 'friends', epoch: 3, keyedBy: null})
    expect(info.body.members.map((m: any) => [m.username, m.role])).to.deep.equal([
      [alice.username, 'admin'],
      [bob.username, 'member'],
      [carol.username, 'member'],
    ])
    expect(info.body.invited).to.deep.equal([])
    expect(info.body.members[0].fingerprint).to.match(/^[0-9a-f]{40}$/)
    const list = await call(carol, 'GET', '/v1/groups')
    expect(list.body.groups).to.deep.equal([{id: group, name: 'friends', epoch: 3, role: 'member', members: 3}])
    expect((await eventsOf(dave)).length, 'a non-member hears nothing').to.equal(0)
  })

  it('accepts a key set only from a member, for the current epoch, covering exactly its members, once', async () => {
    const group = await createGroup()
    const epoch = await epochOf(group)
    const wrapped = (name: string) => fakeCiphertext(`k-${name}`)
    const refused = await sendToGroup(bob, group, epoch, fakeCiphertext('too early'))
    expect(refused.status).to.equal(409)
    expect(refused.body.code).to.equal('FC_GROUP_NOT_KEYED')

    const outsider = await call(dave, 'PUT', `/v1/groups/${group}/keys/${epoch}`, {keys: {[dave.username]: wrapped('d')}})
    expect(outsider.status).to.equal(403)
    expect(outsider.body.code).to.equal('FC_NOT_GROUP_MEMBER')

    const partial = await call(bob, 'PUT', `/v1/groups/${group}/keys/${epoch}`, {
      keys: {[alice.username]: wrapped('a'), [bob.username]: wrapped('b'), [dave.username]: wrapped('d')},
    })
    expect(partial.status).to.equal(409)
    expect(partial.body).to.include({code: 'FC_GROUP_KEYS_MISMATCH'})
    expect(partial.body.missing).to.deep.equal([carol.username])
    expect(partial.body.unexpected).to.deep.equal([dave.username])

    const future = await call(bob, 'PUT', `/v1/groups/${group}/keys/${epoch + 1}`, {keys: {}})
    expect(future.status).to.equal(409)
    expect(future.body).to.include({code: 'FC_GROUP_EPOCH_STALE', epoch})

    const keys = {[alice.username]: wrapped('a'), [bob.username]: wrapped('b'), [carol.username.toUpperCase()]: wrapped('c')}
    expect((await call(bob, 'PUT', `/v1/groups/${group}/keys/${epoch}`, {keys})).status).to.equal(204)
    const again = await call(alice, 'PUT', `/v1/groups/${group}/keys/${epoch}`, {keys})
    expect(again.status).to.equal(409)
    expect(again.body.code).to.equal('FC_GROUP_ALREADY_KEYED')

    const mine = await call(carol, 'GET', `/v1/groups/${group}/keys/${epoch}`)
    expect(mine.status).to.equal(200)
    expect(mine.body).to.deep.equal({
      group,
      epoch,
      keyedBy: bob.username,
      members: [alice.username, bob.username, carol.username].sort(),
      key: wrapped('c'),
    })
    expect((await call(dave, 'GET', `/v1/groups/${group}/keys/${epoch}`)).status).to.equal(403)
    expect((await call(alice, 'GET', `/v1/groups/${group}`)).body.keyedBy).to.equal(bob.username)
    const keyEvents = (await eventsOf(carol)).filter((e) => e.type === 'group.key')
    expect(keyEvents).to.have.length(1)
    expect(keyEvents[0]).to.include({group, epoch, by: bob.username})
  })

  it('stores a group message once and puts it in the stream of every other member', async () => {
    const group = await createGroup()
    expect((await keyCurrentEpoch(alice, group)).status).to.equal(204)
    const epoch = await epochOf(group)
    const before = (await db.query('SELECT count(*)::int AS n FROM messages'))[0].n
    const sent = await sendToGroup(bob, group, epoch, fakeCiphertext('hi all'), 'g1')
    expect(sent.status).to.equal(201)
    expect((await db.query('SELECT count(*)::int AS n FROM messages'))[0].n).to.equal(before + 1)
    expect((await sendToGroup(bob, group, epoch, fakeCiphertext('hi all'), 'g1')).body.id, 'idempotent').to.equal(sent.body.id)
    for (const user of [alice, carol]) {
      const message = (await eventsOf(user)).find((e) => e.type === 'message')
      expect(message).to.deep.include({id: sent.body.id, from: bob.username, to: {group}, epoch, kind: 'text'})
    }
    expect((await eventsOf(bob)).some((e) => e.type === 'message'), 'not echoed to the sender').to.equal(false)
    const history = await call(carol, 'GET', `/v1/conversations/${group}`)
    expect(history.status).to.equal(200)
    expect(history.body.messages.map((m: any) => m.id)).to.deep.equal([sent.body.id])
  })

  it('wakes every parked member at once, each reading its own stream (reads woken together share one query)', async () => {
    const others = await Promise.all([...Array(29).keys()].map((i) => registerAndLogin(i % 2 ? a.url : b.url, uniqueName(`m${i}x`), 'bob')))
    const created = await call(alice, 'POST', '/v1/groups', {name: 'crowd', members: others.map((m) => m.username)})
    const group = created.body.id as string
    const epoch = await joinGroup(group, others)
    await keyCurrentEpoch(alice, group)
    const heads = await Promise.all(others.map(async (member) => (await poll(member, 0, 0, member.server, 1000)).body.next as number))
    const parked = others.map((member, i) => poll(member, heads[i]!, 10_000))
    await new Promise((resolve) => setTimeout(resolve, 300))
    const sent = await sendToGroup(alice, group, epoch, fakeCiphertext('to the crowd'))
    expect(sent.status).to.equal(201)
    const answers = await Promise.all(parked)
    for (const [i, answer] of answers.entries()) {
      expect(answer.body.events.map((e: any) => [e.seq, e.id]), others[i]!.username).to.deep.equal([[heads[i]! + 1, sent.body.id]])
    }
  })

  it('answers a non-member with 403 and a stale epoch with 409', async () => {
    const group = await createGroup()
    await keyCurrentEpoch(alice, group)
    const epoch = await epochOf(group)
    for (const answer of [
      await sendToGroup(dave, group, epoch, fakeCiphertext('let me in')),
      await call(dave, 'GET', `/v1/conversations/${group}`),
      await call(dave, 'GET', `/v1/groups/${group}`),
      await call(dave, 'POST', `/v1/groups/${group}/members`, {username: dave.username}),
      await call(dave, 'DELETE', `/v1/groups/${group}/members/${bob.username}`),
    ]) {
      expect(answer.status, JSON.stringify(answer.body)).to.equal(403)
      expect(answer.body.code).to.equal('FC_NOT_GROUP_MEMBER')
    }
    const notAdmin = await call(bob, 'POST', `/v1/groups/${group}/members`, {username: dave.username})
    expect(notAdmin.status).to.equal(403)
    expect(notAdmin.body.code).to.equal('FC_GROUP_ADMIN_REQUIRED')
    expect((await call(bob, 'DELETE', `/v1/groups/${group}/members/${carol.username}`)).body.code).to.equal('FC_GROUP_ADMIN_REQUIRED')

    expect((await call(alice, 'POST', `/v1/groups/${group}/members`, {username: dave.username})).body, 'an invitation').to.deep.equal({epoch, invited: dave.username})
    expect(await joinGroup(group, [dave]), 'the join starts the epoch').to.equal(epoch + 1)
    const stale = await sendToGroup(bob, group, epoch, fakeCiphertext('old key'))
    expect(stale.status).to.equal(409)
    expect(stale.body).to.include({code: 'FC_GROUP_EPOCH_STALE', epoch: epoch + 1})
    expect((await call(bob, 'GET', '/v1/groups/00000000-0000-4000-8000-000000000000')).status).to.equal(404)
    expect((await call(bob, 'GET', '/v1/groups/not-a-group')).status).to.equal(400)
  })

  it('locks a removed member out of later epochs and a new member out of earlier ones', async () => {
    const group = await createGroup()
    await keyCurrentEpoch(alice, group)
    const first = await epochOf(group)
    const early = await sendToGroup(bob, group, first, fakeCiphertext('epoch 1'))
    expect(early.status).to.equal(201)

    expect((await call(alice, 'DELETE', `/v1/groups/${group}/members/${carol.username}`)).status).to.equal(204)
    const removed = (await eventsOf(carol)).find((e) => e.type === 'group.member_removed')
    expect(removed).to.deep.include({group, epoch: first + 1, by: alice.username, users: [carol.username]})
    expect((await call(alice, 'POST', `/v1/groups/${group}/members`, {username: dave.username})).body.epoch).to.equal(first + 1)
    expect(await joinGroup(group, [dave])).to.equal(first + 2)
    await keyCurrentEpoch(alice, group)
    const late = await sendToGroup(bob, group, first + 2, fakeCiphertext('epoch 3'))
    expect(late.status).to.equal(201)

    const carolEvents = await eventsOf(carol)
    expect(carolEvents.filter((e) => e.type === 'message').map((e) => e.id)).to.deep.equal([early.body.id])
    expect((await call(carol, 'GET', `/v1/groups/${group}/keys/${first + 2}`)).status).to.equal(403)
    expect((await call(carol, 'GET', `/v1/groups/${group}/keys/${first}`)).status, 'her own epochs stay readable').to.equal(200)
    expect((await call(carol, 'GET', `/v1/conversations/${group}`)).status).to.equal(403)

    const daveEvents = await eventsOf(dave)
    expect(daveEvents.filter((e) => e.type === 'message').map((e) => e.id)).to.deep.equal([late.body.id])
    expect((await call(dave, 'GET', `/v1/groups/${group}/keys/${first}`)).status).to.equal(403)
    const daveHistory = await call(dave, 'GET', `/v1/conversations/${group}`)
    expect(daveHistory.body.messages.map((m: any) => m.id)).to.deep.equal([late.body.id])
    const aliceHistory = await call(alice, 'GET', `/v1/conversations/${group}`)
    expect(aliceHistory.body.messages.map((m: any) => m.id)).to.deep.equal([late.body.id, early.body.id])
  })

  it('gives a blob sent to a group only to the members of its epoch', async () => {
    const group = await createGroup([bob])
    await keyCurrentEpoch(alice, group)
    const upload = async () => {
      const answer = await fetch(`${alice.server}/v1/blobs`, {
        method: 'POST',
        headers: {...alice.auth, 'content-type': 'application/octet-stream'},
        body: Buffer.from('encrypted bytes'),
      })
      return ((await answer.json()) as {blob: string}).blob
    }
    const first = await upload()
    const sent = await http('POST', `${alice.server}/v1/messages`, {
      json: {to: {group}, epoch: await epochOf(group), kind: 'image', blob: first, ciphertext: ''},
      headers: alice.auth,
    })
    expect(sent.status).to.equal(201)
    expect((await fetch(`${bob.server}/v1/blobs/${first}`, {headers: bob.auth})).status).to.equal(200)
    await call(alice, 'POST', `/v1/groups/${group}/members`, {username: dave.username})
    expect((await fetch(`${dave.server}/v1/blobs/${first}`, {headers: dave.auth})).status, 'dave is only invited').to.equal(404)
    await joinGroup(group, [dave])
    expect((await fetch(`${dave.server}/v1/blobs/${first}`, {headers: dave.auth})).status, 'sent before dave joined').to.equal(404)
  })

  it('hands the admin role to the oldest member when the last admin leaves, and asks the others to rekey', async () => {
    const group = await createGroup()
    await keyCurrentEpoch(alice, group)
    const epoch = (await epochOf(group)) + 1
    expect((await call(alice, 'DELETE', `/v1/groups/${group}/members/${alice.username}`)).status).to.equal(204)
    const info = await call(bob, 'GET', `/v1/groups/${group}`)
    expect(info.body).to.include({epoch, keyedBy: null})
    expect(info.body.members.map((m: any) => [m.username, m.role])).to.deep.equal([
      [bob.username, 'admin'],
      [carol.username, 'member'],
    ])
    const events = await eventsOf(carol)
    expect(events.map((e) => e.type)).to.include.members(['group.member_removed', 'group.role_changed', 'group.rekey_needed'])
    expect(events.find((e) => e.type === 'group.member_removed')).to.include({left: true, by: alice.username})
    expect(events.filter((e) => e.type === 'group.rekey_needed').at(-1)).to.deep.include({epoch, users: [bob.username, carol.username]})
    expect((await call(alice, 'GET', `/v1/groups`)).body.groups).to.deep.equal([])
    // Any member answers the rekey; then sending works again.
    expect((await keyCurrentEpoch(carol, group)).status).to.equal(204)
    expect((await sendToGroup(carol, group, epoch, fakeCiphertext('still here'))).status).to.equal(201)
  })

  it('lets an admin start a fresh epoch with the same members, the way out of an unusable key set', async () => {
    const group = await createGroup()
    await keyCurrentEpoch(bob, group) // say bob's keys are garbage: nobody can replace them in this epoch
    const old = await epochOf(group)
    expect((await call(carol, 'POST', `/v1/groups/${group}/epochs`)).body.code).to.equal('FC_GROUP_ADMIN_REQUIRED')
    const fresh = await call(alice, 'POST', `/v1/groups/${group}/epochs`)
    expect(fresh.status).to.equal(201)
    expect(fresh.body).to.deep.equal({epoch: old + 1})
    const info = await call(carol, 'GET', `/v1/groups/${group}`)
    expect(info.body).to.include({epoch: old + 1, keyedBy: null})
    expect(info.body.members).to.have.length(3)
    const asked = (await eventsOf(carol)).find((e) => e.type === 'group.rekey_needed' && e.by === alice.username)
    expect(asked).to.deep.include({group, epoch: old + 1, by: alice.username, members: 3})
    expect((await sendToGroup(bob, group, old, fakeCiphertext('old key'))).body.code).to.equal('FC_GROUP_EPOCH_STALE')
    expect((await keyCurrentEpoch(alice, group)).status).to.equal(204)
    expect((await sendToGroup(bob, group, old + 1, fakeCiphertext('new key'))).status).to.equal(201)
  })

  it('promotes and demotes, but never drops the last admin', async () => {
    const group = await createGroup()
    const epoch = await epochOf(group)
    const promoted = await call(alice, 'PATCH', `/v1/groups/${group}/members/${bob.username}`, {role: 'admin'})
    expect(promoted.status).to.equal(200)
    expect(promoted.body).to.deep.equal({username: bob.username, role: 'admin'})
    expect((await call(alice, 'GET', `/v1/groups/${group}`)).body.epoch, 'a role is not a membership change').to.equal(epoch)
    expect((await call(bob, 'PATCH', `/v1/groups/${group}/members/${alice.username}`, {role: 'member'})).status).to.equal(200)
    const last = await call(bob, 'PATCH', `/v1/groups/${group}/members/${bob.username}`, {role: 'member'})
    expect(last.status).to.equal(409)
    expect(last.body.code).to.equal('FC_LAST_ADMIN')
    expect((await eventsOf(carol)).filter((e) => e.type === 'group.role_changed')).to.have.length(2)
  })

  it('serialises two admins changing membership at once into consistent epochs, and loses no message', async () => {
    const group = await createGroup()
    await call(alice, 'PATCH', `/v1/groups/${group}/members/${bob.username}`, {role: 'admin'})
    // dave is invited now and joins below, while bob removes carol: two membership changes at once.
    expect((await call(alice, 'POST', `/v1/groups/${group}/members`, {username: dave.username})).status).to.equal(201)
    await keyCurrentEpoch(alice, group)
    const start = await epochOf(group)

    /** A client's send: on a stale or unkeyed epoch, refetch, key it if needed, retry with the same key. */
    const reliableSend = async (user: TestUser, text: string) => {
      for (let attempt = 0; attempt < 20; attempt++) {
        const info = await call(user, 'GET', `/v1/groups/${group}`)
        const sent = await sendToGroup(user, group, info.body.epoch, fakeCiphertext(text), `${user.username}-${text}`)
        if (sent.status === 201) return {id: sent.body.id as string, epoch: info.body.epoch as number}
        expect(sent.body.code).to.be.oneOf(['FC_GROUP_EPOCH_STALE', 'FC_GROUP_NOT_KEYED'])
        if (sent.body.code === 'FC_GROUP_NOT_KEYED') await keyCurrentEpoch(user, group)
      }
      throw new Error('no send after 20 attempts')
    }
    const sending = Promise.all([...Array(10).keys()].map((i) => reliableSend(i % 2 ? alice : bob, `m${i}`)))
    const [added, removed] = await Promise.all([
      call(dave, 'POST', `/v1/groups/${group}/join`),
      call(bob, 'DELETE', `/v1/groups/${group}/members/${carol.username}`),
    ])
    expect(added.status).to.equal(200)
    expect(removed.status).to.equal(204)
    const after = await call(alice, 'GET', `/v1/groups/${group}`)
    expect(after.body.epoch, 'two changes, two consecutive epochs').to.equal(start + 2)
    expect(added.body.epoch).to.be.oneOf([start + 1, start + 2])
    // Both admins try to key "their" epoch; only the current one can be keyed, once.
    // Both admins key the current epoch at once (a sender may have beaten them to it): at most one set is taken.
    const answers = await Promise.all([keyCurrentEpoch(alice, group), keyCurrentEpoch(bob, group)])
    expect(answers.filter((answer) => answer.status === 204).length).to.be.at.most(1)
    for (const answer of answers.filter((answer) => answer.status !== 204)) expect(answer.body.code).to.equal('FC_GROUP_ALREADY_KEYED')
    const sent = await sending

    const info = await call(alice, 'GET', `/v1/groups/${group}`)
    expect(info.body.epoch).to.equal(start + 2)
    expect(info.body.members.map((m: any) => m.username)).to.have.members([alice.username, bob.username, dave.username])
    const keyRows = await db.query('SELECT epoch, user_id::text FROM group_keys WHERE group_id = $1 ORDER BY epoch', [group])
    const epochs = await db.query('SELECT epoch, member_ids::text[] AS members, keyed_by IS NOT NULL AS keyed FROM group_epochs WHERE group_id = $1 ORDER BY epoch', [group])
    expect(epochs.map((e: any) => e.epoch)).to.deep.equal([...Array(start + 2).keys()].map((i) => i + 1))
    for (const epoch of epochs) {
      const holders = keyRows.filter((k: any) => k.epoch === epoch.epoch).map((k: any) => k.user_id)
      // A keyed epoch has one key for exactly each of its members; an epoch nobody keyed has none.
      expect(holders.sort()).to.deep.equal(epoch.keyed ? [...epoch.members].sort() : [])
    }
    expect(epochs.at(-1).keyed).to.equal(true)

    // Every acknowledged message reached every member of its epoch but its sender.
    const members = new Map<number, string[]>(epochs.map((e: any) => [e.epoch, e.members]))
    const ids = new Map(
      await Promise.all(
        [alice, bob, carol, dave].map(async (user) => [user.username, (await eventsOf(user)).filter((e) => e.type === 'message').map((e) => e.id)] as const),
      ),
    )
    const userIds = new Map(
      (await db.query('SELECT id::text, username FROM users WHERE username = ANY($1)', [[alice, bob, carol, dave].map((u) => u.username)])).map(
        (r: any) => [r.id, r.username],
      ),
    )
    for (const [i, message] of sent.entries()) {
      const sender = i % 2 ? alice.username : bob.username
      const expected = members.get(message.epoch)!.map((id) => userIds.get(id)).filter((name) => name !== sender)
      for (const name of expected) expect(ids.get(name as string), `${name} has m${i}`).to.include(message.id)
    }
  })

  it('validates names, members and sizes', async () => {
    const groupsBefore = (await db.query('SELECT count(*)::int AS n FROM groups'))[0].n
    const bad = [
      await call(alice, 'POST', '/v1/groups', {name: 'bell\u0007', members: []}),
      await call(alice, 'POST', '/v1/groups', {name: '', members: []}),
      await call(alice, 'POST', '/v1/groups', {name: 'x'.repeat(65), members: []}),
      await call(alice, 'POST', '/v1/groups', {name: 'ok', members: ['no spaces allowed']}),
      await call(alice, 'POST', '/v1/groups', {name: 'ok', members: Array.from({length: 1000}, (_, i) => `user${i}`)}),
      await call(alice, 'POST', '/v1/groups', {name: 'ok', members: [], extra: 1}),
    ]
    for (const answer of bad) {
      expect(answer.status, JSON.stringify(answer.body)).to.equal(400)
      expect(answer.headers.get('content-type')).to.match(/problem\+json/)
    }
    const unknown = await call(alice, 'POST', '/v1/groups', {name: 'ok', members: [bob.username, 'nobody-here']})
    expect(unknown.status).to.equal(404)
    expect(unknown.body).to.deep.include({code: 'FC_USER_NOT_FOUND', users: ['nobody-here']})
    expect((await db.query('SELECT count(*)::int AS n FROM groups'))[0].n, 'rejected requests wrote no group').to.equal(groupsBefore)
    const group = await createGroup()
    const noKey = await call(alice, 'PUT', `/v1/groups/${group}/keys/1`, {keys: {[alice.username]: 'plaintext'}})
    expect(noKey.status).to.equal(400)
  })
})
