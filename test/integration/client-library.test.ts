import {spawn} from 'node:child_process'
import {once} from 'node:events'
import {dirname, join, resolve} from 'node:path'
import {fileURLToPath} from 'node:url'

import {expect} from 'chai'

import {FastChatClient, FastChatError, isGroupNotice, isMessage, MemoryStore, type Received, type Report} from '../../client/index.js'
import {PASSWORD} from '../helpers/api.js'
import {PASSPHRASE, startTwoUserCluster, stopTwoUserCluster, type TwoUserCluster} from '../helpers/cli.js'
import {eventually} from '../helpers/processes.js'
import {CLUSTER_SECRET, TEST_HEARTBEAT_MS, waitForHealthy} from '../helpers/cluster.js'
import {http} from '../helpers/http.js'
import {MaliciousProxy} from '../helpers/malicious-proxy.js'

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..')

/** Issue 13: the client library as a program uses it, and the echo bot built on it. */
describe('client library', function () {
  this.timeout(90_000)

  let cluster: TwoUserCluster

  before(async () => {
    cluster = await startTwoUserCluster()
  })

  after(async () => {
    await stopTwoUserCluster(cluster ?? {})
  })

  /** A program's account: registered on the cluster into `store`, with the test passphrase. */
  const registerInMemory = (store: MemoryStore, username: string, onReport?: (report: Report) => void) =>
    FastChatClient.register({
      store,
      username,
      password: PASSWORD,
      superserver: cluster.superserver.url,
      passphrase: async () => PASSPHRASE,
      newPassphrase: async () => PASSPHRASE,
      onReport,
    })

  it('examples/echo-bot.ts answers every message it gets, end to end encrypted and verified', async () => {
    const {alice, bob} = cluster
    // The bot runs as bob, from bob's profile; it imports 'fastchat/client' like any program would.
    const bot = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'examples/echo-bot.ts')], {
      cwd: ROOT,
      env: {...process.env, FASTCHAT_HOME: bob.home, FASTCHAT_PASSPHRASE: PASSPHRASE},
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    bot.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()))
    bot.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
    try {
      await eventually(async () => stderr.includes('echo-bot: answering'), 'the bot to start')
      const first = await alice.json(['send', bob.username, 'ping'])
      const second = await alice.json(['send', bob.username, 'two\nlines'])
      await eventually(async () => stdout.includes(second.id), `the bot to answer (stderr: ${stderr})`)
      const echoed = stdout.trim().split('\n').map((line) => JSON.parse(line) as {echoed: string; to: string})
      expect(echoed.map((e) => e.echoed)).to.deep.equal([first.id, second.id])
      const inbox = await alice.json<{messages: Array<{from: string; text: string; verification: {status: string}}>}>(['inbox', '--timeout', '10000'])
      expect(inbox.messages.map((m) => [m.from, m.text, m.verification.status])).to.deep.equal([
        [bob.username, 'ping', 'valid'],
        [bob.username, 'two\nlines', 'valid'],
      ])
      const exited = once(bot, 'exit')
      bot.kill('SIGINT')
      expect((await exited)[0], stderr).to.equal(0)
    } finally {
      bot.kill('SIGKILL')
    }
  })

  it('a program with a MemoryStore registers, sends, receives in order and resumes from its cursor; its errors carry a code and data', async () => {
    const {alice} = cluster
    const reports: Report[] = []
    const store = new MemoryStore()
    const username = `mem${Date.now().toString(36)}`
    const client = await registerInMemory(store, username, (report) => reports.push(report))
    expect(client.username).to.equal(username)

    const sent = await client.send(alice.username, 'from a program')
    expect(reports).to.deep.include({type: 'key.pinned', username: alice.username, fingerprint: (await store.contacts())[alice.username.toLowerCase()]!.fingerprint})
    const inbox = await alice.json<{messages: Array<{id: string; from: string; text: string; verification: {status: string}}>}>(['inbox', '--timeout', '10000'])
    expect(inbox.messages.map((m) => [m.from, m.text, m.verification.status])).to.deep.equal([[username, 'from a program', 'valid']])
    expect(sent.to).to.equal(alice.username)

    await alice.json(['send', username, 'one'])
    await alice.json(['send', username, 'two'])
    const take = async (count: number) => {
      const items: Received[] = []
      const stop = new AbortController()
      for await (const item of client.messages({signal: stop.signal, waitMs: 5_000})) {
        items.push(item)
        if (items.length === count) stop.abort()
      }
      return items.filter(isMessage).map((m) => [m.from, 'text' in m ? m.text : null, m.verification.status])
    }
    expect(await take(2)).to.deep.equal([
      [alice.username, 'one', 'valid'],
      [alice.username, 'two', 'valid'],
    ])
    // The cursor was kept in the store: the next read starts after them.
    await alice.json(['send', username, 'three'])
    expect(await take(1)).to.deep.equal([[alice.username, 'three', 'valid']])

    const error = await client.send('nobody-by-this-name', 'hello?').then(
      () => undefined,
      (e: unknown) => e,
    )
    expect(error).to.be.instanceOf(FastChatError)
    expect(error).to.include({code: 'FC_USER_NOT_FOUND'})
    expect((error as FastChatError).data).to.deep.include({username: 'nobody-by-this-name'})
  })

  it('invitations: listed, surfaced as a group event, joined (then the group messages of the new epoch decrypt) or declined', async () => {
    const {alice} = cluster
    const store = new MemoryStore()
    const username = `inv${Date.now().toString(36)}`
    const client = await registerInMemory(store, username)
    const name = `lib${Date.now().toString(36)}`
    const group = await alice.json<{id: string}>(['group', 'create', name, '--member', username])
    const other = await alice.json<{id: string}>(['group', 'create', `${name}-b`, '--member', username])
    expect((await client.invitations()).map((i) => [i.group, i.name, i.by])).to.deep.equal([
      [group.id, name, alice.username],
      [other.id, `${name}-b`, alice.username],
    ])
    expect(await client.groups(), 'an invitation is not membership').to.deep.equal([])

    const read = async (until: (item: Received) => boolean) => {
      const items: Received[] = []
      const stop = new AbortController()
      for await (const item of client.messages({signal: stop.signal, waitMs: 5_000})) {
        items.push(item)
        if (until(item)) stop.abort()
      }
      return items
    }
    const notices = await read((item) => isGroupNotice(item) && item.group === other.id)
    expect(notices.filter(isGroupNotice).map((n) => [n.type, n.group, n.by])).to.deep.equal([
      ['group.invited', group.id, alice.username],
      ['group.invited', other.id, alice.username],
    ])

    const joined = await client.joinGroup(name)
    expect(joined).to.deep.include({keyedHere: true})
    expect(joined.group).to.include({id: group.id, epoch: 2, keyedBy: username})
    const sent = await alice.json<{id: string; group: {epoch: number}}>(['send', group.id, 'for the one who joined'])
    expect(sent.group.epoch).to.equal(2)
    const got = (await read((item) => isMessage(item) && item.id === sent.id)).filter(isMessage)
    expect(got.map((m) => [m.from, 'text' in m ? m.text : null, m.verification.status])).to.deep.equal([[alice.username, 'for the one who joined', 'valid']])

    expect(await client.declineGroup(other.id)).to.deep.equal({id: other.id, name: `${name}-b`})
    expect(await client.invitations()).to.deep.equal([])
    const again = await client.declineGroup(`${name}-b`).then(
      () => undefined,
      (e: unknown) => e,
    )
    expect(again).to.be.instanceOf(FastChatError)
    expect(again).to.include({code: 'FC_NOT_INVITED'})
  })

  it('a failover asks the superserver to avoid the server that just failed (issue 15: not sent back to it while another is healthy)', async () => {
    const {alice, superserver} = cluster
    // A third "server", healthy to the superserver, whose database is gone: every send answers 503.
    const broken = await MaliciousProxy.start(cluster.servers[0]!.url)
    broken.answer('POST', /^\/v1\/messages$/, () => ({
      status: 503,
      json: {type: 'about:blank', title: 'Service unavailable', status: 503, code: 'FC_DATABASE_UNAVAILABLE', detail: 'The database is unavailable; retry shortly.'},
      contentType: 'application/problem+json',
    }))
    const auth = {authorization: `Bearer ${CLUSTER_SECRET}`}
    const registered = await http<{id: string}>('POST', `${superserver.url}/v1/servers`, {json: {url: broken.url}, headers: auth})
    const beat = () => http('PUT', `${superserver.url}/v1/servers/${registered.body.id}/heartbeat`, {json: {}, headers: auth})
    const beating = setInterval(() => void beat(), TEST_HEARTBEAT_MS)
    try {
      await beat()
      await waitForHealthy(superserver.url, [...cluster.servers.map((s) => s.url), broken.url])
      const store = new MemoryStore()
      await registerInMemory(store, `avoid${Date.now().toString(36)}`)
      // Six sends, each starting on the broken server: each fails there once, then goes elsewhere. Without
      // ?avoid= the round-robin over three servers would hand the broken one back to every third failover.
      for (let i = 0; i < 6; i++) {
        await store.saveProfile({...(await store.profile())!, server: broken.url})
        const client = await FastChatClient.open({store, passphrase: async () => PASSPHRASE})
        await client.send(alice.username, `try ${i}`)
        expect((await store.profile())!.server).to.not.equal(broken.url)
      }
      const sends = broken.seen.filter((request) => request.method === 'POST' && request.url === '/v1/messages')
      expect(sends).to.have.length(6)
    } finally {
      clearInterval(beating)
      await http('DELETE', `${superserver.url}/v1/servers/${registered.body.id}`, {headers: auth})
      await broken.close()
    }
  })

  it('refuses a short password before asking for a passphrase or reaching a server', async () => {
    let asked = false
    const error = await FastChatClient.register({
      store: new MemoryStore(),
      username: 'shortpass',
      password: 'x',
      superserver: 'http://127.0.0.1:9', // nothing listens there: a request would fail with FC_NETWORK/FC_NO_CHAT_SERVER
      passphrase: async () => ((asked = true), PASSPHRASE),
      newPassphrase: async () => ((asked = true), PASSPHRASE),
    }).then(
      () => undefined,
      (e: unknown) => e,
    )
    expect(error).to.include({code: 'FC_VALIDATION'})
    expect((error as FastChatError).data).to.deep.equal({field: 'password'})
    expect(asked).to.equal(false)
  })
})
