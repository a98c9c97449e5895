import {cp, readFile, stat, writeFile} from 'node:fs/promises'
import {join} from 'node:path'

import {expect} from 'chai'
import type {DataSource} from 'typeorm'

import type {RunningChatServer} from '../../server/main.js'
import {REVOCATION_BOUND_MS} from '../../server/services/session-cache.js'
import type {RunningSuperserver} from '../../superserver/main.js'
import {type CliRun, CliUser, expectOneLineError, runCli, startTwoUserCluster, stopTwoUserCluster} from '../helpers/cli.js'
import {http} from '../helpers/http.js'
import {eventually} from '../helpers/processes.js'


describe('CLI: blocking, sessions and key safety', function () {
  this.timeout(90_000)
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

  const inboxTexts = async (user: CliUser) => ((await user.json<{messages: {text?: string}[]}>(['inbox'])).messages).map((m) => m.text)

  it('hole 6: `fastchat block NAME` makes the server refuse their messages; `blocks` lists them; `unblock` lets them through', async () => {
    const blocked = await alice.json(['block', bob.username])
    expect(blocked.username).to.equal(bob.username)
    expect(Date.parse(blocked.blockedAt)).to.be.closeTo(Date.now(), 60_000)
    expect(await alice.json(['block', bob.username]), 'blocking again changes nothing').to.deep.equal(blocked)
    expect((await alice.json<{blocks: {username: string}[]}>(['blocks'])).blocks.map((b) => b.username)).to.deep.equal([bob.username])
    expect((await alice.run(['blocks'])).stdout).to.include(bob.username)

    const refused = await bob.run(['send', alice.username, 'let me in'])
    expect(refused.code).to.equal(1)
    // (Before it, a first-use note about pinning alice's key.)
    expect(refused.stderr).to.match(/^Error: This user does not accept messages or group invitations from you\.$/m)
    expect(refused.stderr).not.to.match(/\n\s+at |\.(ts|js):\d+/)
    expect(await inboxTexts(alice)).to.deep.equal([])

    const unblocked = await alice.run(['unblock', bob.username])
    expect(unblocked.code, unblocked.stderr).to.equal(0)
    expect(unblocked.stdout).to.include(`Unblocked ${bob.username}`)
    expect((await alice.json(['blocks'])).blocks).to.deep.equal([])
    expect((await bob.run(['send', alice.username, 'hello again'])).code).to.equal(0)
    expect(await inboxTexts(alice)).to.deep.equal(['hello again'])

    const nobody = await alice.run(['block', 'nobody-here-at-all'])
    expect(nobody.code).to.equal(1)
  })

  it('hole 10: `fastchat logout --all` ends every session of the user, in every profile, on every server', async () => {
    // Bob on a second machine: the same keys in another profile, logged in separately.
    const laptop = join(bob.home, '..', 'laptop')
    await cp(bob.home, laptop, {recursive: true})
    // Without the copied session: logging in ends the session a profile holds, which would be bob's first one.
    const {token: _copied, expiresAt: _until, ...copy} = JSON.parse(await readFile(join(laptop, 'profile.json'), 'utf8')) as Record<string, unknown>
    await writeFile(join(laptop, 'profile.json'), JSON.stringify(copy), {mode: 0o600})
    const env = {...bob.env(), FASTCHAT_HOME: laptop}
    expect((await runCli(['login', bob.username], {env})).code).to.equal(0)
    const tokens = [(await bob.readJson('profile.json')).token, JSON.parse(await readFile(join(laptop, 'profile.json'), 'utf8')).token]
    expect(tokens[0]).to.not.equal(tokens[1])

    const out = await bob.json(['logout', '--all'])
    expect(out).to.include({username: bob.username, loggedOut: true, everywhere: true})
    // Within REVOCATION_BOUND_MS on a server that held a token in memory.
    for (const token of tokens) {
      for (const server of servers) {
        const refused = () => http('GET', `${server.url}/v1/me`, {headers: {authorization: `Bearer ${token}`}}).then((answer) => answer.status !== 200 && answer)
        expect((await eventually(refused, 'the token to be refused', REVOCATION_BOUND_MS)).status).to.equal(401)
      }
    }
    expect((await bob.readJson('profile.json')).token).to.equal(undefined)
    const stale = await runCli(['inbox'], {env})
    expect(stale.code).to.equal(1)
    expect(stale.stderr).to.match(/did not accept your session/)
    expect((await bob.run(['login', bob.username])).code).to.equal(0)
  })

  it('hole 10: refuses a key passphrase shorter than 8 characters when one is chosen, before anything is made', async () => {
    const carol = await CliUser.create('carol', superserver.url)
    const short = await carol.run(['register', carol.username], {env: {FASTCHAT_PASSPHRASE: 'seven77'}})
    expect(short.code).to.equal(1)
    expectOneLineError(short, /at least 8 characters/)
    const rows = await db.query('SELECT 1 FROM users WHERE username = $1', [carol.username])
    expect(rows, 'no account was made').to.have.length(0)
    await stat(carol.file('private-key.asc')).then(
      () => expect.fail('no key may be written'),
      (error: NodeJS.ErrnoException) => expect(error.code).to.equal('ENOENT'),
    )
    const generated = await carol.run(['keys', 'generate', '--username', carol.username], {env: {FASTCHAT_PASSPHRASE: 'x'}})
    expect(generated.code).to.equal(1)
    expectOneLineError(generated, /at least 8 characters/)
    // Exactly eight is enough.
    expect((await carol.run(['register', carol.username], {env: {FASTCHAT_PASSPHRASE: 'eight888'}})).code).to.equal(0)
  })

  it('hole 10: `keys export --private --output FILE` writes the file 0600 whatever the umask, and never over an existing file', async () => {
    const file = join(alice.home, '..', 'alice.key.asc')
    const previous = process.umask(0o000)
    let written: Promise<CliRun>
    try {
      written = runCli(['keys', 'export', '--private', '--output', file], {env: alice.env()}) // spawned now, with umask 000
    } finally {
      process.umask(previous)
    }
    const result = await written
    expect(result.code, result.stderr).to.equal(0)
    expect(result.stdout).not.to.include('PRIVATE KEY')
    expect((await stat(file)).mode & 0o777).to.equal(0o600)
    expect(await readFile(file, 'utf8')).to.equal(await readFile(alice.file('private-key.asc'), 'utf8'))

    await writeFile(file, 'something else')
    const again = await alice.run(['keys', 'export', '--private', '--output', file])
    expect(again.code).to.equal(1)
    expectOneLineError(again, /exists/)
    expect(await readFile(file, 'utf8')).to.equal('something else')
  })
})
