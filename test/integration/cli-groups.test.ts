import {createHash, randomBytes} from 'node:crypto'
import {once} from 'node:events'
import {readFile} from 'node:fs/promises'

import {expect} from 'chai'
import type {DataSource} from 'typeorm'

import {newBinding, packText, unpackText} from '../../client/message-content.js'

import {
  CryptoError,
  decryptBytes,
  decryptGroupBytes,
  decryptGroupText,
  decryptText,
  encryptGroupText,
  generateGroupKey,
  type GroupKey,
  unlockPrivateKey,
  unwrapGroupKey,
  type UnlockedKey,
} from '../../crypto/index.js'
import type {RunningChatServer} from '../../server/main.js'
import type {RunningSuperserver} from '../../superserver/main.js'
import {type CliRun, CliUser, expectOneLineError, PASSPHRASE, spawnCli, startTwoUserCluster, stopTwoUserCluster} from '../helpers/cli.js'
import {http} from '../helpers/http.js'
import {eventually} from '../helpers/processes.js'

const FIXTURE = new URL('../../fixtures/images/fastchat.png', import.meta.url).pathname
const sha256 = (data: Uint8Array) => createHash('sha256').update(data).digest('hex')

/** A non-zero exit with one error line, no stack trace. */
const expectFailure = (result: CliRun, code = 1) => {
  expect(result.code, `${result.stdout}\n${result.stderr}`).to.equal(code)
  expectOneLineError(result)
}

/** Resolves with what `promise` was rejected with; fails the test if it resolves (something decrypted). */
async function rejection(promise: Promise<unknown>, what: string): Promise<unknown> {
  try {
    await promise
  } catch (error) {
    return error
  }
  throw new Error(`${what} decrypted, and must not have`)
}

/**
 * Groups through the CLI, on one cluster: two chat servers, users spread over
 * both. The tests run in order and share one group, as its members' story does:
 * created, a member removed, one added, two admins at once, one leaving.
 */
describe('CLI: groups', function () {
  // Each CLI run is a new node process (~0.3-0.5 s); a test runs several.
  this.timeout(60_000)

  let db: DataSource
  let superserver: RunningSuperserver
  let servers: RunningChatServer[]
  let alice: CliUser
  let bob: CliUser
  let carol: CliUser
  let dave: CliUser
  let erin: CliUser
  let mallory: CliUser
  let users: Map<string, CliUser>
  const name = `friends-${randomBytes(3).toString('hex')}`
  let groupId: string

  before(async () => {
    ;({db, superserver, servers, alice, bob} = await startTwoUserCluster())
    ;[carol, dave, erin, mallory] = await Promise.all(['carol', 'dave', 'erin', 'mallory'].map(async (prefix) => (await CliUser.create(prefix, superserver.url)).register()))
    users = new Map([alice, bob, carol, dave, erin].map((user) => [user.username, user]))
  })

  after(async () => {
    await stopTwoUserCluster({db, superserver, servers})
  })

  // --download: members who never wrote to each other one to one would only list each other's files (hole 6).
  const inbox = (user: CliUser) => user.json<{messages: any[]; events: any[]; cursor: number}>(['inbox', '--download'])
  const get = async (user: CliUser, path: string) => {
    const {token, server} = await user.readJson('profile.json')
    return http('GET', `${server}${path}`, {headers: {authorization: `Bearer ${token}`}})
  }
  const privateKey = async (user: CliUser): Promise<UnlockedKey> => unlockPrivateKey(await readFile(user.file('private-key.asc'), 'utf8'), PASSPHRASE)
  const publicKey = (user: CliUser) => readFile(user.file('public-key.asc'), 'utf8')

  /** Every group key `user` was ever given for this group (the database's copies), unwrapped with their private key. */
  async function groupKeysOf(user: CliUser): Promise<GroupKey[]> {
    const rows: {epoch: number; wrapped: string; keyedBy: string}[] = await db.query(
      `SELECT gk.epoch, gk.wrapped_key AS wrapped, ku.username AS "keyedBy"
         FROM group_keys gk JOIN users u ON u.id = gk.user_id
         JOIN group_epochs ge ON ge.group_id = gk.group_id AND ge.epoch = gk.epoch JOIN users ku ON ku.id = ge.keyed_by
        WHERE gk.group_id = $1 AND u.username = $2 ORDER BY gk.epoch`,
      [groupId, user.username],
    )
    const own = await privateKey(user)
    return Promise.all(
      rows.map(async (row) =>
        unwrapGroupKey({armored: row.wrapped, key: own, signerPublicKey: await publicKey(users.get(row.keyedBy)!), group: groupId, epoch: row.epoch}),
      ),
    )
  }

  /** The stored messages of this group in the given epochs: ciphertext, and the encrypted file of images. */
  async function storedMessages(epochs: {min?: number; max?: number}): Promise<{id: string; epoch: number; sender: string; ciphertext: string; file: Buffer | null}[]> {
    const rows: {id: string; epoch: number; sender: string; ciphertext: string; blob: string | null}[] = await db.query(
      `SELECT m.id, m.epoch, u.username AS sender, m.ciphertext, m.blob_id AS blob FROM messages m JOIN users u ON u.id = m.sender_id
        WHERE m.group_id = $1 AND m.epoch >= $2 AND m.epoch <= $3 ORDER BY m.sent_at`,
      [groupId, epochs.min ?? 0, epochs.max ?? 2 ** 31 - 1],
    )
    return Promise.all(
      rows.map(async ({blob, ...row}) => {
        if (!blob) return {...row, file: null}
        const chunks: {data: Buffer}[] = await db.query('SELECT data FROM blob_chunks WHERE blob_id = $1 ORDER BY idx', [blob])
        return {...row, file: Buffer.concat(chunks.map((c) => c.data))}
      }),
    )
  }

  /** `user`'s private key and every group key they ever had open none of `messages`, text, caption or file. */
  async function expectUnreadable(user: CliUser, messages: Awaited<ReturnType<typeof storedMessages>>): Promise<number> {
    const own = await privateKey(user)
    const keys = await groupKeysOf(user)
    let attempts = 0
    for (const message of messages) {
      const senderPublicKey = await publicKey(users.get(message.sender)!)
      if (message.ciphertext) {
        expect(await rejection(decryptText({armored: message.ciphertext, key: own, senderPublicKey}), `${message.id} with the private key`)).to.be.instanceOf(CryptoError)
        attempts++
        for (const key of keys) {
          expect(await rejection(decryptGroupText({armored: message.ciphertext, key, senderPublicKey}), `${message.id} with epoch ${key.epoch}'s key`)).to.be.instanceOf(CryptoError)
          attempts++
        }
      }
      if (message.file) {
        expect(await rejection(decryptBytes({data: message.file, key: own, senderPublicKey}), `file ${message.id} with the private key`)).to.be.instanceOf(CryptoError)
        attempts++
        for (const key of keys) {
          expect(await rejection(decryptGroupBytes({data: message.file, key, senderPublicKey}), `file ${message.id} with epoch ${key.epoch}'s key`)).to.be.instanceOf(CryptoError)
          attempts++
        }
      }
    }
    return attempts
  }

  /** Exactly one key set for the current epoch, covering exactly the current members; returns them. */
  async function expectKeyedForMembers(): Promise<{epoch: number; members: string[]; keyedBy: string}> {
    const {status, body: group} = await get(alice, `/v1/groups/${groupId}`)
    expect(status).to.equal(200)
    expect(group.keyedBy, 'the current epoch has its keys').to.be.a('string')
    const members = group.members.map((m: any) => m.username).sort()
    const [epoch] = await db.query(
      `SELECT g.epoch, ku.username AS "keyedBy", ARRAY(SELECT u.username FROM users u WHERE u.id = ANY(ge.member_ids) ORDER BY u.username) AS members
         FROM groups g JOIN group_epochs ge ON ge.group_id = g.id AND ge.epoch = g.epoch JOIN users ku ON ku.id = ge.keyed_by WHERE g.id = $1`,
      [groupId],
    )
    expect(epoch).to.deep.equal({epoch: group.epoch, keyedBy: group.keyedBy, members})
    const keyed: {username: string}[] = await db.query(
      'SELECT u.username FROM group_keys gk JOIN users u ON u.id = gk.user_id WHERE gk.group_id = $1 AND gk.epoch = $2 ORDER BY u.username',
      [groupId, group.epoch],
    )
    expect(keyed.map((row) => row.username)).to.deep.equal(members)
    return {epoch: group.epoch, members, keyedBy: group.keyedBy}
  }

  it('creates a group over two servers; text and an image reach every member, decrypted and verified', async () => {
    const homes = await Promise.all([alice, bob, carol].map((user) => user.readJson('profile.json')))
    expect(new Set(homes.map((profile) => profile.server)).size).to.equal(2)
    const fixture = await readFile(FIXTURE)

    const created = await alice.json(['group', 'create', name, '--member', bob.username, '--member', carol.username])
    expect(created).to.include({name, epoch: 1, keyedBy: alice.username, keyedHere: true})
    expect(created.members.map((m: any) => [m.username, m.role])).to.deep.equal([[alice.username, 'admin']])
    expect(created.invited).to.have.members([bob.username, carol.username])
    groupId = created.id

    // Bob and carol are invited, not members: the invitation is a line with the command that accepts it.
    const [invitedBob, listedCarol] = await Promise.all([bob.run(['inbox']), carol.json(['group', 'invitations'])])
    expect(invitedBob.stdout).to.include(`* ${alice.username} invited you to #${name}: fastchat group join ${name}`)
    expect(listedCarol.invitations).to.have.length(1)
    expect(listedCarol.invitations[0]).to.include({group: groupId, name, by: alice.username})
    // Each join starts an epoch, keyed by the joiner's client: by name, or by id.
    const joinedBob = await bob.json(['group', 'join', name])
    expect(joinedBob).to.include({id: groupId, epoch: 2, keyedBy: bob.username, keyedHere: true, joined: true})
    const joinedCarol = await carol.json(['group', 'join', groupId])
    expect(joinedCarol).to.include({epoch: 3, keyedBy: carol.username, keyedHere: true})
    expect(joinedCarol.members.map((m: any) => [m.username, m.role])).to.deep.equal([
      [alice.username, 'admin'],
      [bob.username, 'member'],
      [carol.username, 'member'],
    ])
    expect(joinedCarol.invited).to.deep.equal([])

    // A bare name, #name and the id all name the group.
    const [fromAlice, fromBob, fromCarol] = await Promise.all([
      alice.json(['send', name, 'hello from alice']),
      bob.json(['send', `#${name}`, 'hello from bob']),
      carol.json(['send', groupId, '--image', FIXTURE, 'a picture for the group']),
    ])
    expect(fromAlice).to.deep.include({to: `group:${groupId}`, group: {id: groupId, name, epoch: 3}})
    expect(fromCarol).to.include({name: 'fastchat.png', type: 'image/png', size: fixture.byteLength, caption: true})
    // Stored once each, whatever the number of members.
    expect((await storedMessages({})).map((m) => m.id)).to.have.members([fromAlice.id, fromBob.id, fromCarol.id])

    const sent = new Map<string, {from: CliUser; text?: string}>([
      [fromAlice.id, {from: alice, text: 'hello from alice'}],
      [fromBob.id, {from: bob, text: 'hello from bob'}],
      [fromCarol.id, {from: carol}],
    ])
    const inboxes = await Promise.all([alice, bob, carol].map(inbox))
    for (const [index, user] of [alice, bob, carol].entries()) {
      const {messages, events} = inboxes[index]!
      const expected = [...sent].filter(([, m]) => m.from !== user).map(([id]) => id)
      expect(messages.map((m) => m.id), user.username).to.have.members(expected)
      for (const message of messages) {
        const origin = sent.get(message.id)!
        expect(message).to.deep.include({from: origin.from.username, to: `group:${groupId}`, group: {id: groupId, name, epoch: 3}, keyChanged: false})
        expect(message.verification.status, `${user.username} verifies ${message.id}`).to.equal('valid')
        if (origin.text) expect(message.text).to.equal(origin.text)
        else {
          expect(message).to.include({kind: 'image', name: 'fastchat.png', caption: 'a picture for the group'})
          expect(sha256(await readFile(message.path))).to.equal(sha256(fixture))
        }
      }
      expect(events.map((e) => e.type)).to.include.members(['group.member_added', 'group.key'])
    }
    expect(inboxes[0]!.events.map((e) => e.summary)).to.include.members([
      `you created ${name}`,
      `you invited ${bob.username}, ${carol.username} to ${name}`,
      `${bob.username} joined ${name}`,
      `${carol.username} joined ${name}`,
    ])

    // Everyone opened the same key.
    const [, ...shows] = await Promise.all([
      bob.json(['send', name, 'one more, for the eyes']),
      ...[alice, bob, carol].map((user) => user.json(['group', 'show', name])),
    ])
    expect(shows.map((show) => show.key?.id)).to.satisfy((ids: string[]) => ids[0] && ids.every((id) => id === ids[0]))
    expect(shows[0]).to.include({epoch: 3, keyedBy: carol.username})
    expect(shows[0].members.map((m: any) => [m.username, m.trust]).sort()).to.deep.equal(
      [[alice.username, 'you'], [bob.username, 'pinned'], [carol.username, 'pinned']].sort(),
    )
    // The human form names the group; history has every message, bob's own too.
    const [human, history] = await Promise.all([carol.run(['inbox']), bob.json(['history', name])])
    expect(human.stdout).to.match(new RegExp(`\\] #${name} ${bob.username}: one more, for the eyes {2}✔ verified`))
    expect(history.messages).to.have.length(4)
    expect(history.messages.map((m: any) => m.from).sort()).to.deep.equal([alice.username, bob.username, bob.username, carol.username].sort())
    expect(history.messages.map((m: any) => m.verification.status)).to.deep.equal(['valid', 'valid', 'valid', 'valid'])
  })

  it('after a removal the removed member can read nothing of the new epoch; a member added later nothing of the earlier ones', async () => {
    const removed = await alice.json(['group', 'remove', name, carol.username])
    expect(removed).to.include({epoch: 4, keyedBy: alice.username, removed: carol.username})
    expect(removed.members.map((m: any) => m.username).sort()).to.deep.equal([alice.username, bob.username].sort())
    const sent = await Promise.all([
      alice.json(['send', name, 'carol cannot read this']),
      alice.json(['send', name, '--image', FIXTURE, 'nor see this']),
      bob.json(['send', name, 'nor this']),
    ])
    expect(sent.map((s) => s.group.epoch)).to.deep.equal([4, 4, 4])
    const epoch2 = await storedMessages({min: 4})
    expect(epoch2).to.have.length(3)

    // Carol hears that she was removed, and gets nothing of epoch 4: not in her inbox, not in her event stream.
    // (Dave is invited meanwhile; he joins below, in epoch 5.)
    const [carolInbox, added] = await Promise.all([inbox(carol), alice.json(['group', 'add', name, dave.username])])
    expect(carolInbox.messages).to.deep.equal([])
    expect(carolInbox.events.map((e) => e.summary)).to.include(`${alice.username} removed you from ${name}`)
    const [{delivered}] = await db.query(
      'SELECT count(*)::int AS delivered FROM events e JOIN users u ON u.id = e.recipient_id WHERE u.username = $1 AND e.message_id = ANY($2::uuid[])',
      [carol.username, epoch2.map((m) => m.id)],
    )
    expect(delivered).to.equal(0)
    expect((await get(carol, `/v1/groups/${groupId}/keys/4`)).status).to.equal(403)
    expect((await get(carol, `/v1/groups/${groupId}/keys/3`)).status).to.equal(200)

    // Her private key and every group key she was ever given open nothing of epoch 4...
    expect((await groupKeysOf(carol)).map((key) => key.epoch)).to.deep.equal([3])
    // 2 texts and a captioned file: 4 ciphertexts, each tried with her private key and her one group key.
    expect(await expectUnreadable(carol, epoch2)).to.equal(8)
    // ...while the same method opens it with bob's key (the test can fail).
    const [bobEpoch2] = (await groupKeysOf(bob)).filter((key) => key.epoch === 4)
    const secret = epoch2.find((m) => m.id === sent[0].id)!
    const opened = await decryptGroupText({armored: secret.ciphertext, key: bobEpoch2!, senderPublicKey: await publicKey(alice)})
    expect(unpackText(opened.text)?.text).to.equal('carol cannot read this')

    // Dave, invited in epoch 4, is a member from epoch 5 (his join), and sees the welcome and nothing earlier.
    expect(added).to.include({epoch: 4, invitee: dave.username})
    expect(added.invited).to.deep.equal([dave.username])
    const joined = await dave.json(['group', 'join', name])
    expect(joined).to.include({epoch: 5, keyedBy: dave.username})
    const welcome = await alice.json(['send', name, 'welcome dave'])
    const [daveInbox, daveHistory, bobInbox] = await Promise.all([inbox(dave), dave.json(['history', name]), inbox(bob)])
    expect(daveInbox.messages.map((m) => [m.id, m.text, m.verification.status])).to.deep.equal([[welcome.id, 'welcome dave', 'valid']])
    expect(daveInbox.events.map((e) => e.summary)).to.include.members([`${alice.username} invited you to #${name}: fastchat group join ${name}`, `you joined ${name}`])
    expect(daveHistory.messages.map((m: any) => m.id)).to.deep.equal([welcome.id])
    expect((await get(dave, `/v1/groups/${groupId}/keys/3`)).status).to.equal(403)
    expect((await get(dave, `/v1/groups/${groupId}/keys/4`)).status).to.equal(403)
    const earlier = await storedMessages({max: 4})
    expect(earlier).to.have.length(7)
    expect((await groupKeysOf(dave)).map((key) => key.epoch)).to.deep.equal([5])
    expect(await expectUnreadable(dave, earlier)).to.be.greaterThan(earlier.length)

    // A message under a key nobody was given (a faulty or hostile client): one error line, then the rest, and the cursor moves on.
    const bobKey = await privateKey(bob)
    const [bobEpoch3] = (await groupKeysOf(bob)).filter((key) => key.epoch === 5)
    const {token, server} = await bob.readJson('profile.json')
    const post = async (ciphertext: string) => {
      const answer = await http('POST', `${server}/v1/messages`, {
        json: {to: {group: groupId}, epoch: 5, kind: 'text', ciphertext},
        headers: {authorization: `Bearer ${token}`, 'idempotency-key': randomBytes(8).toString('hex')},
      })
      expect(answer.status).to.equal(201)
      return answer.body.id as string
    }
    const stray = await post(await encryptGroupText({text: 'under a key nobody has', key: generateGroupKey(groupId, 5), signer: bobKey}))
    await post(await encryptGroupText({text: packText(newBinding({group: groupId, epoch: 5}), 'under the real key'), key: bobEpoch3!, signer: bobKey}))
    const human = await dave.run(['inbox'])
    expect(human.code, human.stderr).to.equal(0)
    expect(human.stdout).to.include(`✘ could not decrypt message ${stray}`).and.not.include('under a key nobody has')
    expect(human.stdout).to.match(new RegExp(`#${name} ${bob.username}: under the real key {2}✔ verified`))
    expect((await inbox(dave)).messages).to.deep.equal([])

    // Bob (a member throughout) reads both sides of the removal.
    expect(bobInbox.messages.filter((m) => m.verification.status !== 'valid')).to.deep.equal([])
    expect(bobInbox.events.map((e) => e.summary)).to.include.members([
      `${alice.username} removed ${carol.username} from ${name}`,
      `${alice.username} invited ${dave.username} to ${name}`,
      `${dave.username} joined ${name}`,
    ])
  })

  it('two admins changing members at once end with one key set for exactly the members, and lose no message', async () => {
    const promoted = await alice.json(['group', 'promote', name, bob.username])
    expect(promoted).to.include({username: bob.username, role: 'admin'})
    const [{epoch: start}] = await db.query('SELECT epoch FROM groups WHERE id = $1', [groupId])
    const earlier = new Set((await storedMessages({})).map((m) => m.id))
    // Erin is invited first (no new epoch); her join and bob's removal of dave are the two changes at once.
    expect(await alice.json(['group', 'add', name, erin.username])).to.include({epoch: start, invitee: erin.username})

    const runs = await Promise.all([
      erin.run(['group', 'join', name, '--json']),
      bob.run(['group', 'remove', name, dave.username, '--json']),
      alice.run(['send', name, 'alice, during', '--json']),
      bob.run(['send', name, 'bob, during', '--json']),
    ])
    for (const run of runs) expect(run.code, run.stderr).to.equal(0)
    const after = await Promise.all([alice.json(['send', name, 'alice, after']), bob.json(['send', name, 'bob, after'])])
    expect(after.map((sent) => sent.group.epoch)).to.deep.equal([start + 2, start + 2])

    const current = await expectKeyedForMembers()
    expect(current.epoch).to.equal(start + 2)
    expect(current.members).to.deep.equal([alice.username, bob.username, erin.username].sort())

    // Every message of this phase reached exactly the members of its epoch but its sender, readable and verified.
    const phase = (await storedMessages({})).filter((m) => !earlier.has(m.id))
    expect(phase.map((m) => m.id)).to.include.members([...runs.slice(2).map((run) => JSON.parse(run.stdout).id), ...after.map((s) => s.id)])
    expect(phase).to.have.length(4)
    const epochMembers = new Map<number, string[]>(
      (
        await db.query(
          'SELECT ge.epoch, ARRAY(SELECT u.username FROM users u WHERE u.id = ANY(ge.member_ids)) AS members FROM group_epochs ge WHERE ge.group_id = $1',
          [groupId],
        )
      ).map((row: {epoch: number; members: string[]}) => [row.epoch, row.members]),
    )
    const people = [alice, bob, dave, erin]
    const received = await Promise.all(people.map(inbox))
    for (const [index, user] of people.entries()) {
      const got = new Map(received[index]!.messages.map((m) => [m.id, m]))
      for (const message of phase) {
        const shouldGet = epochMembers.get(message.epoch)!.includes(user.username) && message.sender !== user.username
        expect(got.has(message.id), `${user.username} receives ${message.id} (epoch ${message.epoch}, from ${message.sender})`).to.equal(shouldGet)
        if (shouldGet) expect(got.get(message.id).verification.status).to.equal('valid')
      }
    }
    expect(received[3]!.events.map((e) => e.summary)).to.include.members([`${alice.username} invited you to #${name}: fastchat group join ${name}`, `you joined ${name}`])
  })

  it('listen shows group events and keys the group when a member who left asks for it', async () => {
    const [{epoch: start}] = await db.query('SELECT epoch FROM groups WHERE id = $1', [groupId])
    const listener = spawnCli(['listen', '--json'], bob.env())
    try {
      const left = await erin.json(['group', 'leave', name])
      expect(left).to.deep.include({left: true, group: {id: groupId, name}})
      // Nobody else is listening: bob's listen makes the key of the new epoch.
      const keyed = await eventually(async () => {
        const {body} = await get(alice, `/v1/groups/${groupId}`)
        return body.epoch === start + 1 && body.keyedBy !== null && body
      }, 'the new epoch to be keyed')
      expect(keyed.keyedBy).to.equal(bob.username)
      await expectKeyedForMembers()
      const lines = () => listener.stdout().trim().split('\n').filter(Boolean).map((line) => JSON.parse(line))
      await eventually(async () => lines().some((event) => event.type === 'group.key' && event.epoch === start + 1), 'listen to see the key')
      expect(lines().map((event) => event.summary)).to.include.members([`${erin.username} left ${name}`, `${name} needs a new key (epoch ${start + 1})`])

      // Alice opens bob's key (checked against the key she pinned for him) and writes; bob's listen reads it.
      const sent = await alice.json(['send', name, 'after erin left'])
      expect(sent.group.epoch).to.equal(start + 1)
      const line = await eventually(async () => lines().find((message) => message.id === sent.id), 'listen to print the message')
      expect(line).to.deep.include({text: 'after erin left', group: {id: groupId, name, epoch: start + 1}})
      expect(line.verification.status).to.equal('valid')
      const exited = once(listener.child, 'exit')
      listener.child.kill('SIGINT')
      expect((await exited)[0], listener.stderr()).to.equal(0)
    } finally {
      listener.child.kill('SIGKILL')
    }
  })

  it('group rekey starts a fresh epoch with the same members, keyed by the admin, and messages flow on', async () => {
    const created = await alice.json(['group', 'create', `rekey-${randomBytes(2).toString('hex')}`, '--member', bob.username])
    const group = await bob.json(['group', 'join', created.id])
    const fresh = await alice.json(['group', 'rekey', group.id])
    expect(fresh).to.include({epoch: group.epoch + 1, keyedBy: alice.username, keyedHere: true})
    expect(fresh.members.map((m: {username: string}) => m.username)).to.have.members([alice.username, bob.username])
    const refused = await bob.run(['group', 'rekey', group.id])
    expect(refused.code).to.equal(1)
    expect(refused.stderr.trim().split('\n')).to.have.length.at.most(2)
    const sent = await alice.json(['send', group.id, 'under the new key'])
    expect(sent.group).to.include({epoch: fresh.epoch})
    const {messages} = await inbox(bob)
    const got = messages.find((m) => m.id === sent.id)
    expect(got).to.deep.include({text: 'under the new key'})
    expect(got.verification.status).to.equal('valid')
  })

  it('an invitee who never joined cannot read a group message, even with the group id, and declines', async () => {
    const invited = await alice.json(['group', 'add', name, mallory.username])
    expect(invited).to.include({invitee: mallory.username})
    const shown = await alice.json(['group', 'show', name])
    expect(shown.invited.map((i: any) => [i.username, i.by])).to.deep.equal([[mallory.username, alice.username]])
    expect(shown.members.map((m: any) => m.username), 'nobody wraps a key for an invitee').not.to.include(mallory.username)
    const secret = await alice.json(['send', name, 'not for the invitee'])

    const [human, asJson, history, send, show] = await Promise.all([
      mallory.run(['inbox']),
      mallory.run(['group', 'invitations', '--json']),
      mallory.run(['history', groupId]),
      mallory.run(['send', groupId, 'let me in']),
      mallory.run(['group', 'show', groupId]),
    ])
    expect(human.stdout).to.include(`* ${alice.username} invited you to #${name}: fastchat group join ${name}`)
    expect(human.stdout).not.to.include('not for the invitee')
    expect(JSON.parse(asJson.stdout).invitations.map((i: any) => i.group)).to.deep.equal([groupId])
    for (const refused of [history, send, show]) {
      expectFailure(refused)
      expect(refused.stderr).to.include('You are not a member of that group.')
    }
    // Nothing of the group reached her stream but the invitation, and no key was ever wrapped for her.
    const [{events}] = await db.query(
      'SELECT count(*)::int AS events FROM events e JOIN users u ON u.id = e.recipient_id WHERE u.username = $1 AND (e.message_id IS NOT NULL OR e.type <> $2)',
      [mallory.username, 'group.invited'],
    )
    expect(events).to.equal(0)
    expect((await get(mallory, `/v1/groups/${groupId}/keys/${secret.group.epoch}`)).status).to.equal(403)
    expect(await groupKeysOf(mallory)).to.deep.equal([])
    const all = await storedMessages({})
    expect(await expectUnreadable(mallory, all), 'each ciphertext tried with her private key').to.be.at.least(all.length)

    const declined = await mallory.json(['group', 'decline', name])
    expect(declined).to.deep.include({declined: true, group: {id: groupId, name}})
    expect((await mallory.json(['group', 'invitations'])).invitations).to.deep.equal([])
    expect((await alice.json(['group', 'show', name])).invited).to.deep.equal([])
    const again = await mallory.run(['group', 'join', groupId])
    expectFailure(again)
    expect(again.stderr).to.include('You have no open invitation to that group.')
  })

  it('refuses non-members, and non-admins, with one clear line', async () => {
    const stored = async () => (await db.query('SELECT count(*)::int AS count FROM messages'))[0].count
    const storedBefore = await stored()
    // Carol was removed; mallory never was a member. A group not theirs can be named by its id only.
    const attempts: [CliUser, string[]][] = [
      [carol, ['history', groupId]],
      [carol, ['group', 'show', groupId]],
      [mallory, ['send', groupId, '--image', FIXTURE]],
      [mallory, ['history', groupId]],
    ]
    const [refusals, byName, asJson, small] = await Promise.all([
      Promise.all(attempts.map(([outsider, args]) => outsider.run(args))),
      mallory.run(['group', 'show', name]),
      carol.run(['send', groupId, 'let me in', '--json']),
      alice.json(['group', 'create', `small-${randomBytes(2).toString('hex')}`, '--member', carol.username]),
    ])
    for (const [index, refused] of refusals.entries()) {
      expectFailure(refused)
      expect(refused.stderr, attempts[index]![1].join(' ')).to.include('You are not a member of that group.')
    }
    expectFailure(byName)
    expect(byName.stderr).to.include(`You have no group named ${name}.`)
    expect(asJson.code).to.equal(1)
    expect(JSON.parse(asJson.stdout).error).to.include({exit: 1, code: 'FC_NOT_GROUP_MEMBER', message: 'You are not a member of that group.'})
    expect(await stored(), 'nothing was stored for them').to.equal(storedBefore)

    expect(await carol.json(['group', 'join', small.id])).to.include({joined: true})
    const notAdmin = await carol.run(['group', 'add', small.id, mallory.username])
    expectFailure(notAdmin)
    expect(notAdmin.stderr).to.include('Only an admin of the group can do that.')
  })

  it('names groups by id, #name or a unique name, users by @name, and refuses an ambiguous name', async () => {
    // A second group with the same name, and one named like a user.
    const [twin, namesake] = await Promise.all([
      alice.json(['group', 'create', name, '--member', bob.username]),
      alice.json(['group', 'create', bob.username, '--member', bob.username]),
    ])
    // Bob joins both (by id: he is invited to one group named like himself, and already in one named like the twin).
    for (const group of [twin, namesake]) await bob.json(['group', 'join', group.id])
    const ambiguous = [['send', name, 'which one?'], ['group', 'add', `#${name}`, carol.username]]
    const [refusals, both, byId, toUser, toGroup, listed] = await Promise.all([
      Promise.all(ambiguous.map((args) => alice.run(args))),
      alice.run(['send', bob.username, 'who?']),
      alice.json(['send', twin.id, 'to the twin']),
      alice.json(['send', `@${bob.username}`, 'just you']),
      alice.json(['send', `#${bob.username}`, 'the group']),
      alice.json(['group', 'list']),
    ])
    // The name no longer says which group: every command lists both ids.
    for (const refused of refusals) {
      expectFailure(refused)
      expect(refused.stderr).to.include(groupId).and.include(twin.id)
    }
    // A bare name that is a user and a group is refused; #name and @name say which.
    expectFailure(both)
    expect(both.stderr).to.include(`#${bob.username}`).and.include(`@${bob.username}`)
    expect(byId.to).to.equal(`group:${twin.id}`)
    expect(toUser.to).to.equal(bob.username)
    expect(toGroup.to).to.equal(`group:${namesake.id}`)
    expect(listed.groups.map((g: any) => g.id)).to.include.members([groupId, twin.id, namesake.id])

    // Bob reads each where it belongs.
    const {messages} = await inbox(bob)
    const where = messages.filter((m) => ['just you', 'the group', 'to the twin'].includes(m.text)).map((m) => [m.text, m.to, m.verification.status])
    expect(where).to.have.deep.members([
      ['to the twin', `group:${twin.id}`, 'valid'],
      ['just you', bob.username, 'valid'],
      ['the group', `group:${namesake.id}`, 'valid'],
    ])
  })
})
