import {once} from 'node:events'
import {readFile, stat} from 'node:fs/promises'

import {expect} from 'chai'
import type {DataSource} from 'typeorm'

import {encryptText, generateKeyPair, unlockPrivateKey} from '../../crypto/index.js'
import type {RunningChatServer} from '../../server/main.js'
import type {RunningSuperserver} from '../../superserver/main.js'
import {CliUser, expectOneLineError, PASSPHRASE, runCli, spawnCli, startTwoUserCluster, stopTwoUserCluster} from '../helpers/cli.js'
import {PASSWORD} from '../helpers/api.js'
import {http} from '../helpers/http.js'
import {loadFixtureKey} from '../helpers/keys.js'
import {startTestServer, waitForHealthy} from '../helpers/cluster.js'
import {eventually} from '../helpers/processes.js'


describe('CLI: accounts and 1:1 messages', function () {
  // Each CLI run is a new node process (~0.3-0.5 s); a test runs several.
  this.timeout(60_000)

  let db: DataSource
  let superserver: RunningSuperserver
  let servers: RunningChatServer[]
  let alice: CliUser
  let bob: CliUser

  before(async () => {
    // This file tampers with stored messages in the database and has bob read them: a server keeping what came
    // between two of bob's polls (mailboxes) would hand him what it committed instead, so it keeps nothing here.
    ;({db, superserver, servers, alice, bob} = await startTwoUserCluster({FASTCHAT_MAILBOX_MS: '0'}))
  })

  after(async () => {
    await stopTwoUserCluster({db, superserver, servers})
  })

  const inbox = (user: CliUser) => user.json<{messages: any[]; cursor: number}>(['inbox'])

  it('sends an encrypted, signed message between users on different servers; the database never sees the text', async () => {
    const [aliceProfile, bobProfile] = [await alice.readJson('profile.json'), await bob.readJson('profile.json')]
    expect(aliceProfile.server).to.not.equal(bobProfile.server)
    expect(servers.map((s) => s.url)).to.include.members([aliceProfile.server, bobProfile.server])

    const text = `meet me at the old mill ${Date.now()}`
    const sent = await alice.json(['send', bob.username, text])
    expect(sent).to.include({to: bob.username})
    expect(sent.id).to.be.a('string')

    const {messages} = await inbox(bob)
    expect(messages).to.have.length(1)
    expect(messages[0]).to.deep.include({id: sent.id, from: alice.username, text, keyChanged: false})
    expect(messages[0].verification.status).to.equal('valid')

    // Every text-like column of every table: the plaintext appears nowhere.
    const columns: {table_name: string; column_name: string; data_type: string}[] = await db.query(
      `SELECT table_name, column_name, data_type FROM information_schema.columns
        WHERE table_schema = 'public' AND data_type IN ('text', 'character varying', 'bytea', 'jsonb', 'json')`,
    )
    expect(columns.map((c) => c.table_name)).to.include.members(['messages', 'events', 'users'])
    const occurrences = async (needle: string) => {
      let total = 0
      for (const {table_name: table, column_name: column, data_type: type} of columns) {
        const match = type === 'bytea' ? `position(convert_to($1, 'UTF8') in "${column}") > 0` : `strpos("${column}"::text, $1) > 0`
        total += (await db.query(`SELECT count(*)::int AS n FROM "${table}" WHERE ${match}`, [needle]))[0].n
      }
      return total
    }
    // The search finds what is there (the usernames, and the ciphertext itself)...
    expect(await occurrences(bob.username)).to.be.greaterThan(0)
    expect(await occurrences('-----BEGIN PGP MESSAGE-----')).to.be.greaterThan(0)
    // ...and not the text.
    expect(await occurrences(text)).to.equal(0)
  })

  it('shows a message only once: the cursor is saved after each inbox', async () => {
    const text = `only once ${Date.now()}`
    await alice.json(['send', bob.username, text])
    const first = await bob.run(['inbox'])
    expect(first.code, first.stderr).to.equal(0)
    expect(first.stdout).to.include(`${alice.username}: ${text}`).and.include('✔ verified')

    const second = await bob.run(['inbox'])
    expect(second.code).to.equal(0)
    expect(second.stdout).not.to.include(text)
    const again = await inbox(bob)
    expect(again.messages).to.deep.equal([])
    expect(again.cursor).to.equal((await bob.readJson('state.json')).cursor).and.be.greaterThan(0)
  })

  it('refuses to send to a changed key (exit 4) until it is accepted with keys verify', async () => {
    await alice.json(['send', bob.username, 'pinning your key'])
    const pinned = (await alice.readJson('contacts.json'))[bob.username.toLowerCase()]
    expect(pinned.verified).to.equal(false)

    const replacement = await generateKeyPair({username: bob.username, passphrase: 'someone else'})
    await db.query('UPDATE users SET public_key = $1, fingerprint = $2 WHERE username = $3', [replacement.publicKey, replacement.fingerprint, bob.username])
    try {
      const refused = await alice.run(['send', bob.username, 'are you still you?'])
      expect(refused.code, refused.stderr).to.equal(4)
      expectOneLineError(refused)
      expect(refused.stderr).to.include(`${bob.username}'s key has changed`).and.include(`keys verify ${bob.username}`)

      const mismatch = await alice.run(['keys', 'verify', bob.username, '--fingerprint', pinned.fingerprint])
      expect(mismatch.code).to.equal(4)

      const accepted = await alice.json(['keys', 'verify', bob.username, '--accept'])
      expect(accepted).to.include({changed: true, accepted: true, current: replacement.fingerprint})
      const sent = await alice.run(['send', bob.username, 'to your new key'])
      expect(sent.code, sent.stderr).to.equal(0)
      expect((await alice.readJson('contacts.json'))[bob.username.toLowerCase()].fingerprint).to.equal(replacement.fingerprint)
    } finally {
      const original = await bob.readJson('profile.json')
      await db.query('UPDATE users SET public_key = $1, fingerprint = $2 WHERE username = $3', [
        await readFile(bob.file('public-key.asc'), 'utf8'),
        original.fingerprint,
        bob.username,
      ])
      await alice.json(['keys', 'verify', bob.username, '--accept'])
    }
    // The message sent to the replacement key cannot be read by bob: reported, not a crash.
    const {messages} = await inbox(bob)
    const unreadable = messages.find((m) => m.text === null)
    expect(unreadable?.verification.status).to.equal('undecryptable')
    expect(messages.filter((m) => m.text !== null).every((m) => m.verification.status === 'valid')).to.equal(true)
  })

  it("marks a message NOT VERIFIED when the sender's pinned key is not the one that signed it", async () => {
    const mallory = await (await CliUser.create('mallory', superserver.url)).register()
    // Bob has (wrongly, or after an attack) pinned alice's key for mallory.
    const alicePublic = await readFile(alice.file('public-key.asc'), 'utf8')
    const contacts = await bob.readJson('contacts.json').catch(() => ({}))
    const aliceFingerprint = (await alice.readJson('profile.json')).fingerprint
    contacts[mallory.username.toLowerCase()] = {fingerprint: aliceFingerprint, publicKey: alicePublic, pinnedAt: new Date().toISOString(), verified: true}
    await bob.writeJson('contacts.json', contacts)

    await mallory.json(['send', bob.username, 'trust me, I am alice'])
    const human = await bob.run(['inbox'])
    expect(human.code, human.stderr).to.equal(0)
    expect(human.stdout).to.include('trust me, I am alice').and.include('✘ NOT VERIFIED').and.not.include('✔ verified')
    expect(human.stdout).to.include(`WARNING: ${mallory.username}'s key has changed; this message is NOT verified`)
  })

  it('marks a message signed by a key other than the pinned one NOT VERIFIED, even from an unchanged sender', async () => {
    const mallory = await (await CliUser.create('mallory', superserver.url)).register()
    const {token, server} = await mallory.readJson('profile.json')
    const bobPublic = (await http('GET', `${server}/v1/users/${bob.username}`, {headers: {authorization: `Bearer ${token}`}})).body.publicKey
    // Mallory's client signs with a key that is not hers (carol's, from the fixtures).
    const carol = await loadFixtureKey('carol')
    const ciphertext = await encryptText({text: 'signed by carol', to: [bobPublic], signer: carol.unlocked})
    const posted = await http('POST', `${server}/v1/messages`, {
      json: {to: {user: bob.username}, kind: 'text', ciphertext},
      headers: {authorization: `Bearer ${token}`, 'idempotency-key': `forged-${Date.now()}`},
    })
    expect(posted.status).to.equal(201)

    const {messages} = await inbox(bob)
    expect(messages).to.have.length(1)
    expect(messages[0]).to.deep.include({from: mallory.username, text: 'signed by carol', keyChanged: false})
    expect(messages[0].verification.status).to.equal('invalid')
    expect(messages[0].verification.reason).to.match(/not by the sender's key/)
  })

  it('reports a tampered ciphertext as undecryptable, never verified, and carries on with the batch', async () => {
    const tampered = await alice.json(['send', bob.username, 'tamper with me'])
    await alice.json(['send', bob.username, 'after the tampered one'])
    const [{ciphertext}] = await db.query('SELECT ciphertext FROM messages WHERE id = $1', [tampered.id])
    const lines = (ciphertext as string).split('\n')
    const body = lines.findIndex((line, i) => i > 1 && line.length > 40)
    lines[body] = [...lines[body]!].map((c, i) => (i >= 10 && i < 20 ? (c === 'A' ? 'B' : 'A') : c)).join('')
    await db.query('UPDATE messages SET ciphertext = $1 WHERE id = $2', [lines.join('\n'), tampered.id])

    const human = await bob.run(['inbox'])
    expect(human.code, human.stderr).to.equal(0)
    expect(human.stdout).to.include(`could not decrypt message ${tampered.id}`)
    expect(human.stdout).to.match(/after the tampered one {2}✔ verified/)
    expect(human.stdout).not.to.include('tamper with me')
  })

  it('fails over to another server when the one in the profile is gone, and remembers it', async () => {
    const carol = await CliUser.create('carol', superserver.url)
    const doomed = await startTestServer(superserver.url)
    await waitForHealthy(superserver.url, [...servers.map((s) => s.url), doomed.url])
    await carol.register()
    const profile = await carol.readJson('profile.json')
    await carol.writeJson('profile.json', {...profile, server: doomed.url})
    await doomed.close()

    const sent = await carol.json(['send', bob.username, 'through another server'])
    expect(sent.id).to.be.a('string')
    const updated = await carol.readJson('profile.json')
    expect(updated.server).to.not.equal(doomed.url)
    expect(servers.map((s) => s.url)).to.include(updated.server)
    const {messages} = await inbox(bob)
    expect(messages.filter((m) => m.id === sent.id)).to.have.length(1)
  })

  it('follows messages with listen, one JSON object per line, and stops cleanly on SIGINT', async () => {
    const listener = spawnCli(['listen', '--json'], bob.env())
    try {
      const sent = await alice.json(['send', bob.username, 'are you listening?'])
      const line = await eventually(async () => listener.stdout().split('\n').find((l) => l.includes(sent.id)), 'listen to print the message')
      expect(JSON.parse(line)).to.deep.include({id: sent.id, from: alice.username, text: 'are you listening?'})
      const exited = once(listener.child, 'exit')
      listener.child.kill('SIGINT')
      const [code] = await exited
      expect(code, listener.stderr()).to.equal(0)
    } finally {
      listener.child.kill('SIGKILL')
    }
    // listen saved the cursor: inbox has nothing new.
    expect((await inbox(bob)).messages).to.deep.equal([])
  })

  it('shows the conversation history oldest first, both sides decrypted and verified', async () => {
    const carol = await (await CliUser.create('carol', superserver.url)).register()
    await carol.json(['send', alice.username, 'first'])
    await alice.json(['send', carol.username, 'second'])
    const history = await carol.json(['history', alice.username])
    expect(history.messages.map((m: any) => [m.from, m.text, m.verification.status])).to.deep.equal([
      [carol.username, 'first', 'valid'],
      [alice.username, 'second', 'valid'],
    ])
  })

  it('fails with one line and an exit code that tells the cause', async () => {
    const nobody = await CliUser.create('nobody', superserver.url)
    const notLoggedIn = await nobody.run(['send', bob.username, 'hello'])
    expect(notLoggedIn.code).to.equal(1)
    expectOneLineError(notLoggedIn)
    expect(notLoggedIn.stderr).to.include('fastchat register')

    const unknown = await alice.run(['send', 'nosuchuser123', 'hello'])
    expect(unknown.code).to.equal(1)
    expectOneLineError(unknown)
    expect(unknown.stderr).to.include('nosuchuser123').and.include('Hint:')

    const usage = await alice.run(['send'])
    expect(usage.code).to.equal(1)
    expectOneLineError(usage)

    const unreachable = await runCli(['register', 'someone', '--superserver', 'http://127.0.0.1:9'], {env: (await CliUser.create('x', superserver.url)).env()})
    expect(unreachable.code).to.equal(3)
    expectOneLineError(unreachable)

    const asJson = await nobody.run(['whoami', '--json'])
    expect(asJson.code).to.equal(1)
    expect(JSON.parse(asJson.stdout).error).to.include({exit: 1})

    const taken = await (await CliUser.create('dup', superserver.url)).run(['register', alice.username])
    expect(taken.code).to.equal(1)
    expect(taken.stderr).to.include('taken')
  })

  it('finishes a registration whose first answer was lost: the taken name holds this profile\'s key', async () => {
    const user = await CliUser.create('lost', superserver.url)
    const publicKey = (await user.run(['keys', 'generate', '--username', user.username])).stdout
    // The first try got through, its 201 did not: the account exists with this profile's key.
    const first = await http('POST', `${servers[0]!.url}/v1/users`, {json: {username: user.username, password: PASSWORD, publicKey}})
    expect(first.status).to.equal(201)
    const retried = await user.run(['register', user.username])
    expect(retried.code, retried.stderr).to.equal(0)
    expect((await user.readJson('profile.json')).username).to.equal(user.username)
    // Someone else's retry with another key is still told the name is taken.
    const other = await CliUser.create('lost', superserver.url)
    const refused = await other.run(['register', user.username])
    expect(refused.code).to.equal(1)
    expect(refused.stderr).to.include('taken')
  })

  it('keeps the profile private: directory 0700, every file 0600, the private key passphrase-protected', async () => {
    await bob.json(['send', alice.username, 'needs the key'])
    const locked = await alice.run(['inbox'], {env: {FASTCHAT_PASSPHRASE: 'not the passphrase'}})
    expect(locked.code).to.equal(1)
    expectOneLineError(locked)
    expect(locked.stderr).to.include('FASTCHAT_PASSPHRASE')
    expect((await inbox(alice)).messages.map((m) => m.text)).to.include('needs the key')
    await unlockPrivateKey(await readFile(alice.file('private-key.asc'), 'utf8'), PASSPHRASE)

    for (const user of [alice, bob]) {
      expect((await stat(user.home)).mode & 0o777).to.equal(0o700)
      for (const name of ['profile.json', 'private-key.asc', 'public-key.asc', 'contacts.json', 'state.json']) {
        expect((await stat(user.file(name))).mode & 0o777, `${user.username} ${name}`).to.equal(0o600)
      }
    }
  })

  it('shows own and pinned fingerprints, exports keys, and logs out', async () => {
    const me = await alice.json(['whoami'])
    expect(me).to.include({username: alice.username, loggedIn: true})
    expect(me.fingerprint, '--json: lowercase hex, as the API has it').to.match(/^[0-9a-f]{40}$/)
    expect((await alice.json(['keys', 'show'])).fingerprint).to.equal(me.fingerprint)
    const pinned = await alice.json(['keys', 'show', bob.username])
    expect(pinned.fingerprint).to.equal((await bob.json(['whoami'])).fingerprint)
    const exported = await alice.run(['keys', 'export'])
    expect(exported.stdout).to.equal(await readFile(alice.file('public-key.asc'), 'utf8'))

    const user = await (await CliUser.create('leaver', superserver.url)).register()
    const {token, server} = await user.readJson('profile.json')
    expect((await user.json(['logout'])).loggedOut).to.equal(true)
    expect((await http('GET', `${server}/v1/me`, {headers: {authorization: `Bearer ${token}`}})).status).to.equal(401)
    const after = await user.run(['send', alice.username, 'hi'])
    expect(after.code).to.equal(1)
    expect(after.stderr).to.include('fastchat login')
    const wrong = await user.run(['login', user.username], {env: {FASTCHAT_PASSWORD: 'not the password'}})
    expect(wrong.code).to.equal(1)
    expect(wrong.stderr).to.include('Wrong username or password')
    const noPassword = await user.run(['login', user.username], {env: {FASTCHAT_PASSWORD: ''}})
    expect(noPassword.code).to.equal(1)
    expect(noPassword.stderr).to.include('--password-stdin')
    const login = await user.run(['login', user.username, '--password-stdin', '--json'], {env: {FASTCHAT_PASSWORD: ''}, stdin: `${PASSWORD}\n`})
    expect(login.code, login.stderr).to.equal(0)
    expect(JSON.parse(login.stdout)).to.include({username: user.username, keyMatches: true})
    expect((await user.json(['whoami'])).loggedIn).to.equal(true)
  })
})
