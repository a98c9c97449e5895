import {execFile} from 'node:child_process'
import {chmod, mkdtemp, readFile, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {promisify} from 'node:util'

import {expect} from 'chai'

import {bindingProblem, unpackText} from '../../client/message-content.js'
import {decryptText} from '../../crypto/index.js'
import type {RunningChatServer} from '../../server/main.js'
import type {RunningSuperserver} from '../../superserver/main.js'
import {poll, registerAndLogin} from '../helpers/api.js'
import {startTestServer, startTestSuperserver, waitForHealthy} from '../helpers/cluster.js'
import {http} from '../helpers/http.js'
import {loadFixtureKey} from '../helpers/keys.js'
import {CLI} from '../helpers/processes.js'

const run = promisify(execFile)

/** The shell block of docs/api.md marked `# curl-session`, exactly as a reader would paste it. */
async function documentedSession(): Promise<string> {
  const doc = await readFile(new URL('../../docs/api.md', import.meta.url), 'utf8')
  const block = /```sh\n# curl-session\n([\s\S]*?)```/.exec(doc)
  if (!block) throw new Error('docs/api.md has no `# curl-session` block')
  return block[1]!
}

describe('the curl-only session of docs/api.md', function () {
  this.timeout(60_000)
  let superserver: RunningSuperserver
  let server: RunningChatServer

  before(async () => {
    superserver = await startTestSuperserver()
    server = await startTestServer(superserver.url)
    await waitForHealthy(superserver.url, [server.url])
  })
  after(async () => {
    await server.close()
    await superserver.close()
  })

  it('works as documented: bob receives carol’s message, signed by the key fastchat made', async () => {
    const bob = await registerAndLogin(server.url, 'bob', 'bob')
    const dir = await mkdtemp(join(tmpdir(), 'fc-curl-'))
    // `fastchat` on the PATH, as after `npm install -g`.
    await writeFile(join(dir, 'fastchat'), `#!/bin/sh\nexec "${process.execPath}" "${CLI}" "$@"\n`)
    await chmod(join(dir, 'fastchat'), 0o755)
    await run('bash', ['-euo', 'pipefail', '-c', await documentedSession()], {
      cwd: dir,
      env: {...process.env, PATH: `${dir}:${process.env.PATH}`, FASTCHAT_SUPERSERVER: superserver.url},
    })

    const {body} = await poll(bob, 0)
    expect(body.events).to.have.length(1)
    const event = body.events[0]
    expect(event).to.include({from: 'carol', kind: 'text'})
    const carolKey = (await http('GET', `${server.url}/v1/users/carol`, {headers: bob.auth})).body.publicKey
    const bobKey = await loadFixtureKey('bob')
    const opened = await decryptText({armored: event.ciphertext, key: bobKey.unlocked, senderPublicKey: carolKey})
    expect(opened.verification.status).to.equal('valid')
    const content = unpackText(opened.text)
    expect(content?.text).to.equal('hello bob, from curl')
    const arrival = {to: event.to, sentAt: event.sentAt, from: 'carol', fromMe: false, me: 'bob'}
    expect(bindingProblem(content!.binding, arrival)).to.equal(null)
  })
})
