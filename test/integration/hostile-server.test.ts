import {randomUUID} from 'node:crypto'
import {readdir, readFile, writeFile} from 'node:fs/promises'
import {join} from 'node:path'

import {expect} from 'chai'
import type {DataSource} from 'typeorm'

import {newBinding, packText} from '../../client/message-content.js'
import {encryptText, readPublicKey, unlockPrivateKey, type UnlockedKey} from '../../crypto/index.js'
import type {RunningChatServer} from '../../server/main.js'
import type {RunningSuperserver} from '../../superserver/main.js'
import {CliUser, PASSPHRASE, startTwoUserCluster, stopTwoUserCluster} from '../helpers/cli.js'
import {loadFixtureKey} from '../helpers/keys.js'
import {MaliciousProxy} from '../helpers/malicious-proxy.js'

/**
 * Issue 12, holes 1, 6 (files), 8 and 9: what a malicious operator (a proxy
 * in front of a real chat server, rewriting its answers) and a hostile
 * contact can make a client believe or store.
 */

interface Keys {
  publicKey: string
  unlocked: UnlockedKey
  fingerprint: string
}

async function profileKeys(user: CliUser): Promise<Keys> {
  const [publicKey, privateKey] = await Promise.all([readFile(user.file('public-key.asc'), 'utf8'), readFile(user.file('private-key.asc'), 'utf8')])
  return {publicKey, unlocked: await unlockPrivateKey(privateKey, PASSPHRASE), fingerprint: (await readPublicKey(publicKey)).fingerprint}
}

/** Sends the user's requests through `proxy` from now on (as if the superserver had always named it). */
async function routeThrough(user: CliUser, proxy: MaliciousProxy): Promise<void> {
  const profile = await user.readJson('profile.json')
  await user.writeJson('profile.json', {...profile, server: proxy.url, superserver: proxy.url})
}

/** A message event as the server writes it, appended by the proxy to a real poll answer (at seq next + 1, so the cursor moves on). */
function appendEvent(body: {events: any[]; next: number}, event: Record<string, unknown>): {events: any[]; next: number} {
  const seq = body.next + 1
  return {events: [...body.events, {seq, type: 'message', id: randomUUID(), kind: 'text', sentAt: new Date().toISOString(), ...event}], next: seq}
}

describe('hostile server and hostile contacts: keys, names, forwarding, replay, files (issue 12)', function () {
  this.timeout(90_000)

  let db: DataSource
  let superserver: RunningSuperserver
  let servers: RunningChatServer[]
  let alice: CliUser
  let bob: CliUser
  const proxies: MaliciousProxy[] = []

  before(async () => {
    ;({db, superserver, servers, alice, bob} = await startTwoUserCluster())
  })

  after(async () => {
    await Promise.all(proxies.map((proxy) => proxy.close()))
    await stopTwoUserCluster({db, superserver, servers})
  })

  const newUser = async (prefix: string) => (await CliUser.create(prefix, superserver.url)).register()
  const proxyFor = async (user: CliUser) => {
    const profile = await user.readJson('profile.json')
    const proxy = await MaliciousProxy.start(profile.server)
    proxies.push(proxy)
    await routeThrough(user, proxy)
    return proxy
  }

  describe('hole 1: a verified contact\'s key cannot be replaced by the server', () => {
    it('refuses a key lookup answered for another name, keeps the pin, and still refuses to send to the substituted key', async () => {
      const [carol, dave] = [await newUser('carol'), await newUser('dave')]
      // dave knows carol: he wrote to her, so her key is pinned.
      expect((await dave.run(['send', carol.username, 'hello carol'])).code).to.equal(0)
      const pinnedBefore = (await dave.readJson('contacts.json'))[carol.username.toLowerCase()]
      const daveKeys = await profileKeys(dave)

      // The operator's own key, presented as carol's through a new name, "eve".
      const server = await loadFixtureKey('mallory')
      const proxy = await proxyFor(dave)
      const forged = {username: carol.username, publicKey: server.publicKey, fingerprint: server.fingerprint}
      proxy.answer('GET', /^\/v1\/users\/eve[0-9a-f]*$/i, () => ({status: 200, json: forged}))
      proxy.answer('GET', new RegExp(`^/v1/users/${carol.username}$`, 'i'), () => ({status: 200, json: forged}))
      const eve = `eve${randomUUID().slice(0, 8)}`
      const ciphertext = await encryptText({text: packText(newBinding({user: dave.username}), 'hi, it is eve'), to: [daveKeys.publicKey], signer: server.unlocked})
      let injected = false
      proxy.rewrite('GET', /^\/v1\/events$/, (body) => {
        if (injected || body.events === undefined) return body
        injected = true
        return appendEvent(body, {from: eve, to: {user: dave.username}, ciphertext})
      })

      const inbox = await dave.run(['inbox'])
      expect(inbox.code, inbox.stderr).to.equal(0)
      expect(inbox.stdout).to.match(/NOT VERIFIED/)
      expect(inbox.stdout).to.match(/key lookup/)
      const contacts = await dave.readJson('contacts.json')
      expect(contacts[carol.username.toLowerCase()]).to.deep.equal(pinnedBefore)
      expect(Object.keys(contacts)).to.not.include(eve.toLowerCase())

      const send = await dave.run(['send', carol.username, 'to the real carol, I hope'])
      expect(send.code, send.stderr).to.equal(4)
      expect(send.stderr).to.match(/changed/)
      expect(proxy.seen.some((r) => r.method === 'POST' && r.url === '/v1/messages')).to.equal(false)
    })

    it('shows a message from a known contact under a changed key as NOT VERIFIED with a warning, blocks sending until `keys trust`', async () => {
      const [carol, dave] = [await newUser('carol'), await newUser('dave')]
      expect((await dave.run(['send', carol.username, 'hello carol'])).code).to.equal(0)
      const daveKeys = await profileKeys(dave)
      const server = await loadFixtureKey('mallory')
      const proxy = await proxyFor(dave)
      proxy.answer('GET', new RegExp(`^/v1/users/${carol.username}$`, 'i'), () => ({
        status: 200,
        json: {username: carol.username, publicKey: server.publicKey, fingerprint: server.fingerprint},
      }))
      const ciphertext = await encryptText({text: packText(newBinding({user: dave.username}), 'my new key, trust me'), to: [daveKeys.publicKey], signer: server.unlocked})
      let injected = false
      proxy.rewrite('GET', /^\/v1\/events$/, (body) => {
        if (injected || body.events === undefined) return body
        injected = true
        return appendEvent(body, {from: carol.username, to: {user: dave.username}, ciphertext})
      })

      const inbox = await dave.run(['inbox'])
      expect(inbox.code, inbox.stderr).to.equal(0)
      expect(inbox.stdout).to.match(/WARNING: .*key has changed/)
      expect(inbox.stdout).to.match(/NOT VERIFIED/)
      expect(inbox.stdout).to.not.match(/✔ verified/)
      expect((await dave.run(['send', carol.username, 'still you?'])).code).to.equal(4)

      // The user's decision, by the fingerprint shown: only then does the pin change.
      const wrong = await dave.run(['keys', 'trust', carol.username, '--fingerprint', daveKeys.fingerprint])
      expect(wrong.code).to.equal(4)
      const trust = await dave.run(['keys', 'trust', carol.username, '--fingerprint', server.fingerprint])
      expect(trust.code, trust.stderr).to.equal(0)
      expect((await dave.readJson('contacts.json'))[carol.username.toLowerCase()].fingerprint).to.equal(server.fingerprint)
      expect((await dave.run(['send', carol.username, 'ok then'])).code).to.equal(0)
    })

    it('keeps refusing to send after a key change was seen, even when the server shows the pinned key again', async () => {
      const [carol, dave] = [await newUser('carol'), await newUser('dave')]
      expect((await dave.run(['send', carol.username, 'hello carol'])).code).to.equal(0)
      const [carolKeys, daveKeys] = [await profileKeys(carol), await profileKeys(dave)]
      const server = await loadFixtureKey('mallory')
      const proxy = await proxyFor(dave)
      // For one inbox only, the server shows its own key for carol and a message signed with it.
      proxy.answer('GET', new RegExp(`^/v1/users/${carol.username}$`, 'i'), () => ({
        status: 200,
        json: {username: carol.username, publicKey: server.publicKey, fingerprint: server.fingerprint},
      }))
      const ciphertext = await encryptText({text: packText(newBinding({user: dave.username}), 'new key'), to: [daveKeys.publicKey], signer: server.unlocked})
      let injected = false
      proxy.rewrite('GET', /^\/v1\/events$/, (body) => {
        if (injected || body.events === undefined) return body
        injected = true
        return appendEvent(body, {from: carol.username, to: {user: dave.username}, ciphertext})
      })
      expect((await dave.run(['inbox'])).stdout).to.match(/WARNING/)
      proxy.reset()

      const refused = await dave.run(['send', carol.username, 'are you there?'])
      expect(refused.code, refused.stdout).to.equal(4)
      const verify = await dave.run(['keys', 'verify', carol.username, '--fingerprint', carolKeys.fingerprint])
      expect(verify.code, verify.stderr).to.equal(0)
      expect((await dave.run(['send', carol.username, 'are you there?'])).code).to.equal(0)
    })
  })

  describe('hole 8: usernames that are JavaScript object properties', () => {
    it('sends to, receives from and shows the key of users named constructor, toString and valueOf', async () => {
      for (const username of ['constructor', 'toString', 'valueOf']) {
        const user = await CliUser.named(username, superserver.url)
        await user.register()
        const send = await alice.run(['send', username, `hello ${username}`])
        expect(send.code, send.stderr).to.equal(0)
        expect((await user.run(['send', alice.username, 'hi alice'])).code).to.equal(0)
        const inbox = await alice.run(['inbox'])
        expect(inbox.code, inbox.stderr).to.equal(0)
        expect(inbox.stdout).to.match(new RegExp(`${username}: hi alice .*✔ verified`))
        const show = await alice.run(['keys', 'show', username])
        expect(show.code, show.stderr).to.equal(0)
      }
    })
  })

  describe('hole 9: forwarded and replayed messages', () => {
    it('does not verify a message its recipient re-encrypted to someone else (surreptitious forwarding)', async () => {
      const [carol, dave] = [await newUser('carol'), await newUser('dave')]
      const carolKeys = await profileKeys(carol)
      // carol wrote "I owe you 100" to dave; dave keeps carol's signed plaintext and encrypts it to alice.
      // (What openpgp lets dave do with a message he decrypted: the signed bytes are carol's, unchanged.)
      const signedForDave = packText(newBinding({user: dave.username}), 'I owe you 100')
      const forwarded = await encryptText({text: signedForDave, to: [(await profileKeys(alice)).publicKey], signer: carolKeys.unlocked})
      expect((await alice.run(['send', carol.username, 'hi'])).code).to.equal(0)
      const proxy = await proxyFor(alice)
      let injected = false
      proxy.rewrite('GET', /^\/v1\/events$/, (body) => {
        if (injected || body.events === undefined) return body
        injected = true
        return appendEvent(body, {from: carol.username, to: {user: alice.username}, ciphertext: forwarded})
      })
      const inbox = await alice.run(['inbox'])
      expect(inbox.code, inbox.stderr).to.equal(0)
      expect(inbox.stdout).to.match(/I owe you 100/)
      expect(inbox.stdout).to.match(/NOT VERIFIED \(written to .*not to/)
      expect(inbox.stdout).to.not.match(/I owe you 100 .*✔ verified/)
    })

    it('drops a message the server delivers a second time under a new id, and shows the first one once', async () => {
      const [carol, dave] = [await newUser('carol'), await newUser('dave')]
      expect((await dave.run(['send', carol.username, 'hello carol'])).code).to.equal(0)
      expect((await carol.run(['send', dave.username, 'meet at the north gate'])).code).to.equal(0)
      const proxy = await proxyFor(dave)
      let original: any
      proxy.rewrite('GET', /^\/v1\/events$/, (body) => {
        const events = (body.events ?? []) as any[]
        original ??= events.find((event) => event.type === 'message' && event.from === carol.username)
        return body
      })
      const first = await dave.run(['inbox'])
      expect(first.code, first.stderr).to.equal(0)
      expect(first.stdout.match(/meet at the north gate/g)).to.have.length(1)
      expect(original).to.be.an('object')

      // Later, the operator replays it: a real new event's content replaced by the old ciphertext, under a fresh id.
      expect((await carol.run(['send', dave.username, 'something new'])).code).to.equal(0)
      proxy.reset()
      proxy.rewrite('GET', /^\/v1\/events$/, (body) => ({
        ...body,
        events: (body.events ?? []).map((event: any) => (event.type === 'message' ? {...event, id: randomUUID(), ciphertext: original.ciphertext} : event)),
      }))
      const second = await dave.run(['inbox'])
      expect(second.code, second.stderr).to.equal(0)
      expect(second.stdout).to.not.match(/north gate/)
    })
  })

  describe('hole 6: files from people you never wrote to are listed, not saved', () => {
    const sendFile = async (from: CliUser, to: CliUser, name: string, bytes = 2048) => {
      const path = join(from.home, '..', name)
      await writeFile(path, Buffer.alloc(bytes, 7))
      const sent = await from.run(['send', to.username, '--image', path])
      expect(sent.code, sent.stderr).to.equal(0)
    }
    const downloads = (user: CliUser) => readdir(user.file('downloads')).catch(() => [] as string[])

    it('saves a contact\'s file, lists a stranger\'s (and a too-large one) until --download', async () => {
      const [me, friend, stranger] = [await newUser('me'), await newUser('friend'), await newUser('stranger')]
      expect((await me.run(['send', friend.username, 'hi friend'])).code).to.equal(0)
      await sendFile(friend, me, 'from-friend.bin')
      await sendFile(stranger, me, 'from-stranger.bin')
      const inbox = await me.run(['inbox'])
      expect(inbox.code, inbox.stderr).to.equal(0)
      expect(inbox.stdout).to.match(new RegExp(`${stranger.username} sent a file \\(not downloaded: you have not written to them; --download saves it\\)`))
      expect(await downloads(me)).to.deep.equal(['from-friend.bin'])

      await sendFile(friend, me, 'big.bin', 2 * 1024 * 1024)
      const limited = await me.run(['inbox', '--max-download', '1'])
      expect(limited.stdout).to.match(/not downloaded: larger than --max-download/)
      expect(await downloads(me)).to.deep.equal(['from-friend.bin'])

      const fetched = await me.run(['history', stranger.username, '--download'])
      expect(fetched.code, fetched.stderr).to.equal(0)
      expect((await downloads(me)).sort()).to.deep.equal(['from-friend.bin', 'from-stranger.bin'])
    })
  })
})
