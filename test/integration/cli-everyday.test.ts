import {randomBytes} from 'node:crypto'
import {cp, mkdir, readdir, readFile, rm, stat, writeFile} from 'node:fs/promises'
import {join} from 'node:path'

import {expect} from 'chai'
import type {DataSource} from 'typeorm'

import {MAX_CIPHERTEXT_BYTES} from '../../protocol/primitives.js'
import type {RunningChatServer} from '../../server/main.js'
import type {RunningSuperserver} from '../../superserver/main.js'
import {CliUser, runCli, spawnCli, startTwoUserCluster, stopTwoUserCluster} from '../helpers/cli.js'
import {MaliciousProxy} from '../helpers/malicious-proxy.js'
import {eventually} from '../helpers/processes.js'

/** Issue 13, part 4 ("a day of use without friction"): the CLI-only items. */
describe('CLI: a day of use without friction (issue 13, part 4)', function () {
  this.timeout(120_000)
  let db: DataSource
  let superserver: RunningSuperserver
  let servers: RunningChatServer[]
  let alice: CliUser
  let bob: CliUser

  before(async () => {
    ;({db, superserver, servers, alice, bob} = await startTwoUserCluster())
  })
  after(async () => {
    await stopTwoUserCluster({db, superserver, servers})
  })

  const inboxOf = async (env: NodeJS.ProcessEnv) => {
    const result = await runCli(['inbox', '--json'], {env})
    expect(result.code, result.stderr).to.equal(0)
    return JSON.parse(result.stdout) as {messages: {from: string; text?: string; verification: {status: string}}[]}
  }

  /** A copy of `user`'s profile, as on a new machine: with or without its key files. */
  const copyProfile = async (user: CliUser, name: string, options: {keys: boolean}) => {
    const dir = join(user.home, '..', name)
    await cp(user.home, dir, {recursive: true})
    if (!options.keys) for (const file of ['private-key.asc', 'public-key.asc']) await rm(join(dir, file))
    return dir
  }

  describe('keys import: the key exported with `keys export --private`, onto a new machine', () => {
    let exported: string

    before(async () => {
      exported = join(alice.home, '..', 'alice.key.asc')
      const result = await alice.run(['keys', 'export', '--private', '--output', exported])
      expect(result.code, result.stderr).to.equal(0)
    })

    it('keys import FILE: a profile without keys gets them (0600), and `inbox` there decrypts a message', async () => {
      const laptop = await copyProfile(alice, 'laptop', {keys: false})
      const env = {...alice.env(), FASTCHAT_HOME: laptop}
      expect((await bob.run(['send', alice.username, 'read me on the laptop'])).code).to.equal(0)
      const locked = await runCli(['inbox'], {env})
      expect(locked.code, 'no keys yet').to.equal(1)
      expect(locked.stderr).to.include('fastchat keys import FILE')

      const imported = await runCli(['keys', 'import', exported, '--json'], {env})
      expect(imported.code, imported.stderr).to.equal(0)
      const result = JSON.parse(imported.stdout)
      expect(result).to.include({fingerprint: (await alice.readJson('profile.json')).fingerprint, profile: laptop})
      for (const file of ['private-key.asc', 'public-key.asc']) {
        expect((await stat(join(laptop, file))).mode & 0o777, file).to.equal(0o600)
        expect(await readFile(join(laptop, file), 'utf8'), file).to.equal(await readFile(alice.file(file), 'utf8'))
      }

      const messages = (await inboxOf(env)).messages
      expect(messages.map((m) => m.text)).to.deep.equal(['read me on the laptop'])
      expect(messages[0]!.verification.status).to.equal('valid')
    })

    it('keys import: a fresh profile (no account yet) takes the key, and `login` then works with it', async () => {
      const fresh = join(alice.home, '..', 'fresh')
      const env = {...alice.env(), FASTCHAT_HOME: fresh}
      const imported = await runCli(['keys', 'import', exported], {env})
      expect(imported.code, imported.stderr).to.equal(0)
      expect(imported.stdout).to.match(/Imported the key pair of .* into /)
      const login = await runCli(['login', alice.username, '--json'], {env})
      expect(login.code, login.stderr).to.equal(0)
      expect(JSON.parse(login.stdout).keyMatches).to.equal(true)
    })

    it("keys import refuses another account's key (exit 4), a wrong passphrase, a public key, and an existing key", async () => {
      const bobsKey = join(bob.home, '..', 'bob.key.asc')
      expect((await bob.run(['keys', 'export', '--private', '--output', bobsKey])).code).to.equal(0)
      const laptop = await copyProfile(alice, 'laptop2', {keys: false})
      const env = {...alice.env(), FASTCHAT_HOME: laptop}

      const foreign = await runCli(['keys', 'import', bobsKey], {env})
      expect(foreign.code, foreign.stderr).to.equal(4)
      expect(foreign.stderr).to.match(/^Error: This key .* is not the key of .* in this profile/m)

      const wrong = await runCli(['keys', 'import', exported], {env: {...env, FASTCHAT_PASSPHRASE: 'not the passphrase'}})
      expect(wrong.code, wrong.stderr).to.equal(1)
      expect(wrong.stderr).to.include('Wrong passphrase')

      const publicOnly = await runCli(['keys', 'import', alice.file('public-key.asc')], {env})
      expect(publicOnly.code, publicOnly.stderr).to.equal(1)
      expect(publicOnly.stderr).to.match(/not a private key/i)

      const missing = await runCli(['keys', 'import', join(laptop, 'nothing-here.asc')], {env})
      expect(missing.code, missing.stderr).to.equal(1)
      expect(missing.stderr).to.match(/^Error: Cannot read /m)

      for (const file of ['private-key.asc', 'public-key.asc']) await expectMissing(join(laptop, file))

      const existing = await alice.run(['keys', 'import', exported])
      expect(existing.code, existing.stderr).to.equal(1)
      expect(existing.stderr).to.match(/already a private key/)
    })
  })

  it('note to self: `send <own name>` prints no first-use note about your own key, pins nothing, and arrives verified', async () => {
    const sent = await alice.run(['send', alice.username, 'remember the milk'])
    expect(sent.code, sent.stderr).to.equal(0)
    expect(sent.stderr).not.to.match(/Pinned|Compare it with/)
    expect(sent.stdout).to.include(`Sent to ${alice.username}`)
    expect(Object.keys(await alice.readJson('contacts.json').catch(() => ({})))).not.to.include(alice.username.toLowerCase())

    const note = (await inboxOf(alice.env())).messages.find((m) => m.text === 'remember the milk')
    expect(note, 'the note arrives').to.not.equal(undefined)
    expect(note!.from).to.equal(alice.username)
    expect(note!.verification.status).to.equal('valid')
  })

  it('the logged-out and expired hints keep the --profile DIR that chose the profile', async () => {
    const dir = await copyProfile(alice, 'logged-out', {keys: true})
    const profile = JSON.parse(await readFile(join(dir, 'profile.json'), 'utf8'))
    // Chosen by --profile alone: no FASTCHAT_HOME.
    const {FASTCHAT_HOME: _home, ...base} = alice.env()

    await writeFile(join(dir, 'profile.json'), JSON.stringify({...profile, token: undefined, expiresAt: undefined}))
    const loggedOut = await runCli(['inbox', '--profile', dir], {env: base})
    expect(loggedOut.code, loggedOut.stderr).to.equal(1)
    expect(loggedOut.stderr).to.include(`Run \`fastchat login ${alice.username} --profile ${dir}\``)
    const viaHome = await runCli(['inbox'], {env: {...base, FASTCHAT_HOME: dir}})
    expect(viaHome.stderr).to.include(`Run \`fastchat login ${alice.username} --profile ${dir}\``)

    await writeFile(join(dir, 'profile.json'), JSON.stringify({...profile, expiresAt: new Date(Date.now() - 60_000).toISOString()}))
    const expired = await runCli(['send', bob.username, 'hi', '--profile', dir], {env: base})
    expect(expired.code, expired.stderr).to.equal(1)
    expect(expired.stderr).to.match(/session expired/)
    expect(expired.stderr).to.include(`Run \`fastchat login ${alice.username} --profile ${dir}\``)

    // A directory with a space in it comes out quoted for the shell.
    const spaced = join(alice.home, '..', 'my profile')
    await mkdir(spaced)
    await cp(join(dir, 'profile.json'), join(spaced, 'profile.json'))
    const quoted = await runCli(['inbox', '--profile', spaced], {env: base})
    expect(quoted.stderr).to.include(`--profile '${spaced}'`)
  })

  it(`a text over the ciphertext limit (${MAX_CIPHERTEXT_BYTES / 1024} KiB) is refused before sending, with the limit and the way to send it as a file`, async () => {
    // Random letters: FastChat never compresses, but a test that relied on it could pass by accident.
    const text = randomBytes(45_000).toString('base64').replace(/[^a-z]/gi, 'x').slice(0, 60_000)
    expect(text).to.have.length(60_000)
    const before = (await inboxOf(bob.env())).messages.length
    expect(before).to.equal(0)

    const tooLong = await alice.run(['send', bob.username, text])
    expect(tooLong.code, tooLong.stderr).to.equal(1)
    expect(tooLong.stderr).to.match(
      new RegExp(`^Error: Messages are at most ${MAX_CIPHERTEXT_BYTES / 1024} KiB once encrypted \\(this one is \\d+ KiB\\); nothing was sent\\. Hint: Send it as a file: fastchat send ${bob.username} --image FILE`, 'm'),
    )
    expect(tooLong.stderr).not.to.include('request body')
    const json = await alice.run(['send', bob.username, '-', '--json'], {stdin: text})
    expect(json.code).to.equal(1)
    expect(JSON.parse(json.stdout).error).to.include({exit: 1, code: 'FC_MESSAGE_TOO_LARGE'})
    expect((await inboxOf(bob.env())).messages, 'nothing was sent').to.deep.equal([])

    const fits = text.slice(0, 40_000)
    expect((await alice.run(['send', bob.username, fits])).code, 'a long text under the limit still goes').to.equal(0)
    expect((await inboxOf(bob.env())).messages.map((m) => m.text)).to.deep.equal([fits])
  })

  it('`group create --help` shows no empty `[default: ]`', async () => {
    const help = await runCli(['group', 'create', '--help'])
    expect(help.code, help.stderr).to.equal(0)
    expect(help.stdout).to.include('--member')
    expect(help.stdout).not.to.include('[default: ]')
  })

  it('register checks the name and the password before asking for anything else, and says plainly why', async () => {
    const fresh = await CliUser.create('newbie', superserver.url)
    // No FASTCHAT_PASSPHRASE and no terminal: had it got as far as the passphrase, it would have failed on that instead.
    const {FASTCHAT_PASSPHRASE: _passphrase, ...noPassphrase} = fresh.env()
    const badName = await runCli(['register', 'a!'], {env: noPassphrase})
    expect(badName.code, badName.stderr).to.equal(1)
    expect(badName.stderr).to.match(/^Error: The username a! is not valid: it must be 3-32 characters/)
    const shortPassword = await runCli(['register', fresh.username], {env: {...noPassphrase, FASTCHAT_PASSWORD: 'short'}})
    expect(shortPassword.code, shortPassword.stderr).to.equal(1)
    expect(shortPassword.stderr).to.match(/^Error: The password must be at least 8 characters\. Hint: /)
    await expectMissing(fresh.file('private-key.asc'))
    // A passphrase for a new key is checked as well (FASTCHAT_PASSPHRASE included), before a key is made.
    const shortPassphrase = await runCli(['register', fresh.username], {env: {...fresh.env(), FASTCHAT_PASSPHRASE: 'x'}})
    expect(shortPassphrase.code, shortPassphrase.stderr).to.equal(1)
    expect(shortPassphrase.stderr).to.match(/passphrase in FASTCHAT_PASSPHRASE must be at least 8 characters/)
    await expectMissing(fresh.file('private-key.asc'))
    expect((await fresh.json(['register', fresh.username])).username).to.equal(fresh.username)
  })

  it('a session the server refused (401) is answered with the login command for this --profile', async () => {
    const dir = await copyProfile(alice, 'revoked', {keys: true})
    const profile = JSON.parse(await readFile(join(dir, 'profile.json'), 'utf8'))
    await writeFile(join(dir, 'profile.json'), JSON.stringify({...profile, token: randomBytes(32).toString('base64url')}))
    const {FASTCHAT_HOME: _home, ...base} = alice.env()
    const refused = await runCli(['inbox', '--profile', dir], {env: base})
    expect(refused.code, refused.stderr).to.equal(1)
    expect(refused.stderr).to.include(`Run \`fastchat login <username> --profile ${dir}\``)
  })

  it('listen says "connection lost, retrying" once during an outage and "reconnected" after it, then goes on', async () => {
    // A user of its own (its messages stay out of alice's inbox), pointed at a proxy in front of its real server: the proxy plays the outage.
    const carol = await (await CliUser.create('carol', superserver.url)).register()
    const dir = await copyProfile(carol, 'outage', {keys: true})
    const profile = JSON.parse(await readFile(join(dir, 'profile.json'), 'utf8'))
    const proxy = await MaliciousProxy.start(profile.server)
    let down = false
    let refused = 0
    proxy.answer('GET', /^\/v1\/events$/, () => {
      if (!down) return undefined
      refused++
      return {status: 503, json: {type: 'about:blank', title: 'Service Unavailable', status: 503, code: 'FC_DATABASE_UNAVAILABLE'}, contentType: 'application/problem+json'}
    })
    await writeFile(join(dir, 'profile.json'), JSON.stringify({...profile, server: proxy.url, superserver: proxy.url}))
    // Long-polls: this proxy holds every answer until it ends, a stream's too (event-stream.test.ts has the stream's fall back).
    const listener = spawnCli(['listen', '--profile', dir, '--transport', 'poll'], {...carol.env(), FASTCHAT_HOME: undefined})
    try {
      await eventually(async () => listener.stderr().includes('Listening as'), 'listen to start')
      down = true
      // A message ends the long poll in flight; the polls after it are refused.
      await bob.json(['send', carol.username, 'before the outage'])
      await eventually(async () => refused >= 3, 'several polls to be refused')
      down = false
      await eventually(async () => /Reconnected/.test(listener.stderr()), `listen to reconnect (stderr: ${listener.stderr()})`)
      await bob.json(['send', carol.username, 'after the outage'])
      await eventually(async () => listener.stdout().includes('after the outage'), 'the message after the outage')
      const lines = listener.stderr().split('\n')
      expect(lines.filter((line) => /lost.*retrying/i.test(line)), listener.stderr()).to.have.length(1)
      expect(lines.filter((line) => /Reconnected/.test(line))).to.have.length(1)
      expect(listener.stdout()).to.include('before the outage')
    } finally {
      listener.child.kill('SIGKILL')
      await proxy.close()
    }
  })

  it('history shows the name and path of a file saved before, and --download never saves a second copy', async () => {
    const [sender, receiver] = await Promise.all([CliUser.create('sender', superserver.url), CliUser.create('receiver', superserver.url)])
    await sender.register()
    await receiver.register()
    const png = join(sender.home, '..', 'photo.png')
    await writeFile(png, randomBytes(2048))
    // The receiver has written to the sender: a contact, so the receiver's inbox saves the file unasked.
    await receiver.json(['send', sender.username, 'send me the photo'])
    const sent = await sender.json(['send', receiver.username, '--image', png, 'the photo'])
    const inbox = await receiver.json<{messages: Array<{id: string; path: string | null}>}>(['inbox'])
    const saved = inbox.messages.find((m) => m.id === sent.id)!.path
    expect(saved).to.be.a('string')
    const listed = (await receiver.json<{messages: Array<{id: string; name: string | null; path: string | null; verification: {status: string}}>}>(['history', sender.username])).messages.find((m) => m.id === sent.id)!
    expect(listed).to.deep.include({name: 'photo.png', path: saved})
    expect(listed.verification.status).to.equal('valid')
    const human = await receiver.run(['history', sender.username])
    expect(human.stdout).to.include(`sent photo.png (2.0 KiB, image/png) → ${saved}`)
    const again = (await receiver.json<{messages: Array<{id: string; path: string | null}>}>(['history', sender.username, '--download'])).messages.find((m) => m.id === sent.id)!
    expect(again.path).to.equal(saved)
    expect((await readdir(join(receiver.home, 'downloads'))).filter((name) => name.startsWith('photo'))).to.deep.equal(['photo.png'])
    // Gone from disk: --download fetches it again.
    await rm(saved!)
    const fetched = (await receiver.json<{messages: Array<{id: string; path: string | null}>}>(['history', sender.username, '--download'])).messages.find((m) => m.id === sent.id)!
    expect(fetched.path).to.be.a('string')
    expect((await stat(fetched.path!)).size).to.equal(2048)
  })

  it('every error has a code in --json, the CLI\'s own refusals included', async () => {
    const empty = await CliUser.create('nocode', superserver.url)
    const cases: Array<[string[], NodeJS.ProcessEnv, string]> = [
      [['send', bob.username, '--json'], alice.env(), 'FC_USAGE'],
      [['send', bob.username, '   ', '--json'], alice.env(), 'FC_USAGE'],
      [['inbox', '--json'], empty.env(), 'FC_NO_PROFILE'],
      [['keys', 'show', 'nobody-pinned', '--json'], alice.env(), 'FC_USAGE'],
      [['send', 'nobody-here', 'hi', '--json'], alice.env(), 'FC_USER_NOT_FOUND'],
      [['register', alice.username, '--json'], alice.env(), 'FC_PROFILE_IN_USE'],
    ]
    const results = await Promise.all(cases.map(([args, env]) => runCli(args, {env})))
    cases.forEach(([args, , code], i) => {
      expect(results[i]!.code, `${args.join(' ')}: ${results[i]!.stderr}`).to.not.equal(0)
      expect(JSON.parse(results[i]!.stdout).error, args.join(' ')).to.include({code})
    })
  })

  it('--json gives every fingerprint as lowercase hex (keys show, whoami, group show); people still read spaced groups', async () => {
    const hex = /^[0-9a-f]{40}$/
    const own = (await alice.readJson('profile.json')).fingerprint
    expect((await alice.json(['keys', 'show'])).fingerprint).to.equal(own)
    expect((await alice.json(['whoami'])).fingerprint).to.equal(own)
    expect((await alice.json(['keys', 'show', bob.username])).fingerprint).to.equal((await bob.readJson('profile.json')).fingerprint)

    const group = await alice.json(['group', 'create', 'fingerprints', '--member', bob.username])
    await bob.json(['group', 'join', group.id])
    const shown = await alice.json(['group', 'show', group.id])
    expect(shown.members).to.have.length(2)
    for (const member of shown.members) expect(member.fingerprint, member.username).to.match(hex)
    expect(shown.members.find((m: {username: string}) => m.username === alice.username).fingerprint).to.equal(own)

    const human = await alice.run(['keys', 'show'])
    expect(human.stdout).to.match(/([0-9A-F]{4} ){9}[0-9A-F]{4}/)
    expect((await alice.run(['group', 'show', group.id])).stdout).to.match(/([0-9A-F]{4} ){9}[0-9A-F]{4}/)
  })
})

async function expectMissing(path: string): Promise<void> {
  const error = await stat(path).then(
    () => undefined,
    (e: NodeJS.ErrnoException) => e,
  )
  expect(error?.code, `${path} should not exist`).to.equal('ENOENT')
}
