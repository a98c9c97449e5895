import {expect} from 'chai'

import type {RunningChatServer} from '../../server/main.js'
import {fakeCiphertext, joinGroup, poll, registerAndLogin, type TestUser, uniqueName} from '../helpers/api.js'
import {startTestServer} from '../helpers/cluster.js'
import {http} from '../helpers/http.js'

/*
 * Group invitations (issue 16, part 4; docs/api.md "Invitations"): being put
 * in a group by someone else is an invitation, and an invitee is no member —
 * no messages, no keys, no history — until they join.
 */

const call = (user: TestUser, method: string, path: string, json?: unknown) => http(method, `${user.server}${path}`, {json, headers: user.auth})

const sendToGroup = (user: TestUser, group: string, epoch: number, ciphertext: string) =>
  http('POST', `${user.server}/v1/messages`, {json: {to: {group}, epoch, kind: 'text', ciphertext}, headers: user.auth})

async function eventsOf(user: TestUser): Promise<any[]> {
  const answer = await poll(user, 0, 0, user.server, 1000)
  expect(answer.status).to.equal(200)
  return answer.body.events
}

/** Keys the current epoch (fake wrapped keys) for exactly the members the server lists. */
async function keyCurrentEpoch(user: TestUser, group: string): Promise<number> {
  const info = await call(user, 'GET', `/v1/groups/${group}`)
  const keys = Object.fromEntries(info.body.members.map((m: {username: string}) => [m.username, fakeCiphertext(`key-${m.username}`)]))
  const put = await call(user, 'PUT', `/v1/groups/${group}/keys/${info.body.epoch}`, {keys})
  expect(put.status, JSON.stringify(put.body)).to.equal(204)
  return info.body.epoch
}

describe('group invitations (HTTP API)', () => {
  let a: RunningChatServer
  let b: RunningChatServer
  let alice: TestUser
  let bob: TestUser
  let carol: TestUser
  let dave: TestUser

  before(async () => {
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
  })

  async function invite(members: TestUser[], name = 'friends'): Promise<string> {
    const created = await call(alice, 'POST', '/v1/groups', {name, members: members.map((m) => m.username)})
    expect(created.status, JSON.stringify(created.body)).to.equal(201)
    return created.body.id
  }

  it('lists an invitation, shows invitees apart from members, and a join starts a new epoch keyed for the joiner', async () => {
    const group = await invite([bob, carol])
    const [invited] = await eventsOf(bob)
    expect(invited).to.deep.include({type: 'group.invited', group, name: 'friends', epoch: 1, by: alice.username})
    expect((await call(bob, 'GET', '/v1/groups')).body.groups, 'not my group yet').to.deep.equal([])
    const list = await call(bob, 'GET', '/v1/groups/invitations')
    expect(list.status).to.equal(200)
    expect(list.body.invitations).to.have.length(1)
    expect(list.body.invitations[0]).to.include({group, name: 'friends', by: alice.username})
    expect(Date.now() - Date.parse(list.body.invitations[0].invitedAt)).to.be.within(0, 60_000)

    const view = await call(alice, 'GET', `/v1/groups/${group}`)
    expect(view.body.members.map((m: any) => m.username)).to.deep.equal([alice.username])
    // Invited in one statement: the same time, then in user id order, which concurrent registrations do not fix.
    expect(view.body.invited.map((i: any) => [i.username, i.by])).to.have.deep.members([
      [bob.username, alice.username],
      [carol.username, alice.username],
    ])
    expect((await eventsOf(alice)).filter((e) => e.type === 'group.member_invited')[0].users).to.have.members([bob.username, carol.username])
    // The key set covers joined members only: nobody wraps a key for an invitee.
    const withInvitee = await call(alice, 'PUT', `/v1/groups/${group}/keys/1`, {keys: {[alice.username]: fakeCiphertext('a'), [bob.username]: fakeCiphertext('b')}})
    expect(withInvitee.status).to.equal(409)
    expect(withInvitee.body).to.include({code: 'FC_GROUP_KEYS_MISMATCH'})
    expect(withInvitee.body.unexpected).to.deep.equal([bob.username])
    expect(await keyCurrentEpoch(alice, group)).to.equal(1)

    const joined = await call(bob, 'POST', `/v1/groups/${group}/join`)
    expect(joined.status, JSON.stringify(joined.body)).to.equal(200)
    expect(joined.body).to.deep.equal({epoch: 2})
    const aliceEvents = await eventsOf(alice)
    expect(aliceEvents.find((e) => e.type === 'group.member_added')).to.deep.include({group, epoch: 2, by: bob.username, users: [bob.username]})
    expect(aliceEvents.some((e) => e.type === 'group.rekey_needed'), 'the joiner keys it, as whoever makes a change does').to.equal(false)
    expect((await eventsOf(bob)).some((e) => e.type === 'group.member_added')).to.equal(true)
    expect((await eventsOf(carol)).map((e) => e.type), 'another invitee hears nothing of it').to.deep.equal(['group.invited'])
    expect((await call(bob, 'GET', '/v1/groups/invitations')).body.invitations).to.deep.equal([])
    expect((await call(bob, 'GET', '/v1/groups')).body.groups).to.deep.equal([{id: group, name: 'friends', epoch: 2, role: 'member', members: 2}])
    const after = await call(bob, 'GET', `/v1/groups/${group}`)
    expect(after.body.members.map((m: any) => m.username)).to.deep.equal([alice.username, bob.username])
    expect(after.body.invited.map((i: any) => i.username)).to.deep.equal([carol.username])

    // The joiner keys the new epoch for the joined members, and receives what is sent in it.
    expect(await keyCurrentEpoch(bob, group)).to.equal(2)
    expect((await call(bob, 'GET', `/v1/groups/${group}/keys/2`)).status).to.equal(200)
    expect((await call(bob, 'GET', `/v1/groups/${group}/keys/1`)).status, 'not earlier epochs').to.equal(403)
    const sent = await sendToGroup(alice, group, 2, fakeCiphertext('welcome'))
    expect(sent.status).to.equal(201)
    expect((await eventsOf(bob)).filter((e) => e.type === 'message').map((e) => e.id)).to.deep.equal([sent.body.id])
    expect((await eventsOf(carol)).filter((e) => e.type === 'message')).to.deep.equal([])
    const again = await call(bob, 'POST', `/v1/groups/${group}/join`)
    expect(again.status).to.equal(409)
    expect(again.body.code).to.equal('FC_ALREADY_GROUP_MEMBER')
  })

  it('never lets an invitee who has not joined read the group, even with its id', async () => {
    const group = await invite([bob, carol])
    await joinGroup(group, [carol])
    const epoch = await keyCurrentEpoch(alice, group)
    const sent = await sendToGroup(alice, group, epoch, fakeCiphertext('members only'))
    expect(sent.status).to.equal(201)
    expect((await sendToGroup(carol, group, epoch, fakeCiphertext('me too'))).status).to.equal(201)

    const events = await eventsOf(bob)
    expect(events.map((e) => e.type), 'no message, no key, no membership event').to.deep.equal(['group.invited'])
    for (const [what, answer] of [
      ['the key', await call(bob, 'GET', `/v1/groups/${group}/keys/${epoch}`)],
      ['the first key', await call(bob, 'GET', `/v1/groups/${group}/keys/1`)],
      ['a send', await sendToGroup(bob, group, epoch, fakeCiphertext('let me in'))],
      ['the history', await call(bob, 'GET', `/v1/conversations/${group}`)],
      ['the group', await call(bob, 'GET', `/v1/groups/${group}`)],
      ['a key set', await call(bob, 'PUT', `/v1/groups/${group}/keys/${epoch}`, {keys: {[bob.username]: fakeCiphertext('b')}})],
      ['an invitation of their own', await call(bob, 'POST', `/v1/groups/${group}/members`, {username: dave.username})],
      ['a new epoch', await call(bob, 'POST', `/v1/groups/${group}/epochs`)],
    ] as const) {
      expect(answer.status, `${what}: ${JSON.stringify(answer.body)}`).to.equal(403)
      expect(answer.body.code, what).to.equal('FC_NOT_GROUP_MEMBER')
      expect(JSON.stringify(answer.body), what).not.to.include('members only')
    }
    expect((await call(bob, 'GET', `/v1/groups/${group}`)).body.invited, 'told they are invited').to.equal(true)
  })

  it('declines: the invitation ends without an event, and cannot be joined afterwards', async () => {
    const group = await invite([bob, carol])
    const before = (await eventsOf(alice)).length
    const declined = await call(bob, 'POST', `/v1/groups/${group}/decline`)
    expect(declined.status).to.equal(204)
    expect((await eventsOf(alice)).length, 'nobody is told').to.equal(before)
    expect((await call(bob, 'GET', '/v1/groups/invitations')).body.invitations).to.deep.equal([])
    const view = await call(alice, 'GET', `/v1/groups/${group}`)
    expect(view.body.invited.map((i: any) => i.username)).to.deep.equal([carol.username])
    expect(view.body.epoch, 'no new epoch').to.equal(1)

    for (const answer of [await call(bob, 'POST', `/v1/groups/${group}/join`), await call(bob, 'POST', `/v1/groups/${group}/decline`), await call(dave, 'POST', `/v1/groups/${group}/join`)]) {
      expect(answer.status).to.equal(404)
      expect(answer.body.code).to.equal('FC_NOT_INVITED')
    }
    const unknown = await call(bob, 'POST', '/v1/groups/00000000-0000-4000-8000-000000000000/join')
    expect(unknown.status).to.equal(404)
    expect(unknown.body.code).to.equal('FC_GROUP_NOT_FOUND')
    // Invited again, they can join.
    expect((await call(alice, 'POST', `/v1/groups/${group}/members`, {username: bob.username})).body).to.deep.equal({epoch: 1, invited: bob.username})
    expect(await joinGroup(group, [bob])).to.equal(2)
  })

  it('ends every open invitation from someone the invitee blocks, and no new one comes', async () => {
    const mine = await invite([bob], 'from alice')
    const other = await invite([bob], 'also from alice')
    const carols = (await call(carol, 'POST', '/v1/groups', {name: 'from carol', members: [bob.username]})).body.id
    expect((await call(bob, 'GET', '/v1/groups/invitations')).body.invitations).to.have.length(3)

    expect((await call(bob, 'POST', '/v1/blocks', {username: alice.username})).status).to.be.oneOf([200, 201])
    const left = (await call(bob, 'GET', '/v1/groups/invitations')).body.invitations
    expect(left.map((i: any) => i.group), "carol's invitation stays").to.deep.equal([carols])
    for (const group of [mine, other]) {
      expect((await call(bob, 'POST', `/v1/groups/${group}/join`)).body.code).to.equal('FC_NOT_INVITED')
      expect((await call(alice, 'GET', `/v1/groups/${group}`)).body.invited).to.deep.equal([])
      const again = await call(alice, 'POST', `/v1/groups/${group}/members`, {username: bob.username})
      expect(again.status).to.equal(403)
      expect(again.body.code).to.equal('FC_NOT_ACCEPTED')
    }
  })

  it('lets an admin withdraw an invitation without a new epoch, and refuses inviting twice', async () => {
    const group = await invite([bob, carol])
    await joinGroup(group, [carol])
    const epoch = (await call(alice, 'GET', `/v1/groups/${group}`)).body.epoch
    const twice = await call(alice, 'POST', `/v1/groups/${group}/members`, {username: bob.username})
    expect(twice.status).to.equal(409)
    expect(twice.body.code).to.equal('FC_ALREADY_INVITED')
    const member = await call(alice, 'POST', `/v1/groups/${group}/members`, {username: carol.username})
    expect(member.body.code).to.equal('FC_ALREADY_GROUP_MEMBER')
    expect((await call(carol, 'DELETE', `/v1/groups/${group}/members/${bob.username}`)).body.code, 'members may not').to.equal('FC_GROUP_ADMIN_REQUIRED')

    expect((await call(alice, 'DELETE', `/v1/groups/${group}/members/${bob.username}`)).status).to.equal(204)
    const view = await call(alice, 'GET', `/v1/groups/${group}`)
    expect(view.body.epoch, 'an invitee was never in an epoch').to.equal(epoch)
    expect(view.body.invited).to.deep.equal([])
    expect((await call(bob, 'POST', `/v1/groups/${group}/join`)).body.code).to.equal('FC_NOT_INVITED')
  })
})
