import {execFile} from 'node:child_process'
import {mkdtemp, readFile, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {promisify} from 'node:util'

import {expect} from 'chai'

import {bindingProblem, unpackText} from '../../client/message-content.js'
import {decryptText} from '../../crypto/index.js'
import type {RunningChatServer} from '../../server/main.js'
import type {RunningSuperserver} from '../../superserver/main.js'
import {fixturePublicKey, PASSWORD, poll, registerAndLogin} from '../helpers/api.js'
import {startTestServer, startTestSuperserver, waitForHealthy} from '../helpers/cluster.js'
import {http} from '../helpers/http.js'
import {freshDatabase} from '../helpers/database.js'
import {cliOnPath} from '../helpers/documented.js'
import {loadFixtureKey} from '../helpers/keys.js'

const run = promisify(execFile)

/** The shell block of docs/api.md marked `# curl-session`, exactly as a reader would paste it. */
async function documentedSession(): Promise<string> {
  const doc = await readFile(new URL('../../docs/api.md', import.meta.url), 'utf8')
  const block = /```sh\n# curl-session\n([\s\S]*?)```/.exec(doc)
  if (!block) throw new Error('docs/api.md has no `# curl-session` block')
  return block[1]!
}

/** The gpg-agents still running for this GNUPGHOME (the session must stop the one gpg starts). */
async function agentsFor(gnupgHome: string): Promise<string[]> {
  const {stdout} = await run('ps', ['-eo', 'args='])
  return stdout.split('\n').filter((line) => line.includes('gpg-agent') && line.includes(gnupgHome))
}

describe('the curl-only session of docs/api.md', function () {
  this.timeout(60_000)
  let superserver: RunningSuperserver
  let server: RunningChatServer
  let bin: string
  const dirs: string[] = []

  before(async () => {
    // A fresh cluster: its own database, where nobody but bob has an account (as the doc says).
    const env = {DATABASE_URL: await freshDatabase('curl', {migrated: true})}
    superserver = await startTestSuperserver(env)
    server = await startTestServer(superserver.url, env)
    await waitForHealthy(superserver.url, [server.url])
    bin = await cliOnPath()
    dirs.push(bin)
  })
  after(async () => {
    await server?.close()
    await superserver?.close()
    for (const dir of dirs.splice(0)) await rm(dir, {recursive: true, force: true})
  })

  /** The session pasted into bash in an empty directory, stopping at the first command that fails. */
  async function runSession(): Promise<{code: number; output: string; dir: string}> {
    const dir = await mkdtemp(join(tmpdir(), 'fc-curl-'))
    dirs.push(dir)
    const env: NodeJS.ProcessEnv = {...process.env, PATH: `${bin}:${process.env.PATH}`, FASTCHAT_SUPERSERVER: superserver.url}
    delete env.FASTCHAT_HOME
    delete env.GNUPGHOME
    return run('bash', ['-euo', 'pipefail', '-c', await documentedSession()], {cwd: dir, env}).then(
      ({stdout, stderr}) => ({code: 0, output: stdout + stderr, dir}),
      (error: {code: number; stdout: string; stderr: string}) => ({code: error.code, output: error.stdout + error.stderr, dir}),
    )
  }

  it('works as documented: bob receives dave’s message, signed by the key fastchat made', async () => {
    const bob = await registerAndLogin(server.url, 'bob', 'bob')
    const session = await runSession()
    expect(session.code, session.output).to.equal(0)
    expect(await agentsFor(join(session.dir, 'gnupg'))).to.deep.equal([])

    const {body} = await poll(bob, 0)
    expect(body.events).to.have.length(1)
    const event = body.events[0]
    expect(event).to.include({from: 'dave', kind: 'text'})
    const daveKey = (await http('GET', `${server.url}/v1/users/dave`, {headers: bob.auth})).body.publicKey
    const bobKey = await loadFixtureKey('bob')
    const opened = await decryptText({armored: event.ciphertext, key: bobKey.unlocked, senderPublicKey: daveKey})
    expect(opened.verification.status).to.equal('valid')
    const content = unpackText(opened.text)
    expect(content?.text).to.equal('hello bob, from curl')
    const arrival = {to: event.to, sentAt: event.sentAt, from: 'dave', fromMe: false, me: 'bob'}
    expect(bindingProblem(content!.binding, arrival)).to.equal(null)
  })

  it('stops and says why when dave has an account already, instead of going on without a token', async () => {
    // Dave exists after the test above; made here too so that this one stands alone.
    const made = await http('POST', `${server.url}/v1/users`, {json: {username: 'dave', password: PASSWORD, publicKey: await fixturePublicKey('carol')}})
    expect([201, 409]).to.include(made.status)
    const again = await runSession()
    expect(again.code).to.not.equal(0)
    expect(again.output).to.include('"code":"FC_USERNAME_TAKEN"')
    expect(again.output).to.match(/curl: \(22\) The requested URL returned error: 409/)
  })
})
