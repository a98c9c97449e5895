import {spawn} from 'node:child_process'
import {once} from 'node:events'
import {existsSync} from 'node:fs'
import {readFile, stat} from 'node:fs/promises'
import {createServer, type IncomingHttpHeaders, type Server} from 'node:http'
import type {AddressInfo} from 'node:net'

import {expect} from 'chai'
import type {DataSource} from 'typeorm'
import {request} from 'undici'

import type {RunningChatServer} from '../../server/main.js'
import type {RunningSuperserver} from '../../superserver/main.js'
import {type CliRun, type CliUser, PASSPHRASE, startTwoUserCluster, stopTwoUserCluster} from '../helpers/cli.js'
import {CLI, eventually, type Started, startCli} from '../helpers/processes.js'

/**
 * Issue 13, part 3: `fastchat daemon` holds the unlocked key and serves a
 * local JSON API. Everything here is plain HTTP against the real daemon
 * (a child process), which talks to real servers; the CLI commands of a
 * profile with a daemon go through it, without a passphrase.
 */

interface Item {
  id: string
  from: string
  text: string | null
  verification: {status: string}
}

/** `fastchat ARGS` as `user`, with no passphrase anywhere: not in the environment, and no terminal to ask on (stdin is a pipe). */
async function runWithoutPassphrase(user: CliUser, args: string[]): Promise<CliRun> {
  const {FASTCHAT_PASSPHRASE: _, ...env} = {...process.env, ...user.env()}
  const child = spawn(process.execPath, [CLI, ...args], {env, stdio: ['pipe', 'pipe', 'pipe']})
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()))
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
  child.stdin.end()
  const [code] = (await once(child, 'exit')) as [number | null]
  return {code: code ?? 128, stdout, stderr}
}

/** A daemon as a program sees it: a URL and a token. */
class Api {
  constructor(
    readonly url: string,
    readonly token: string,
  ) {}

  static async of(user: CliUser, started: Started): Promise<Api> {
    const info = await user.readJson<{url: string; token: string}>('daemon.json')
    expect(info.url).to.equal(started.url)
    return new Api(info.url, info.token)
  }

  /** Plain HTTP (undici's request: unlike fetch, it sends a Host header it is given). */
  async call(method: 'GET' | 'POST' | 'OPTIONS', path: string, options: {body?: unknown; headers?: Record<string, string>} = {}): Promise<{status: number; type: string; json: any}> {
    const headers = {authorization: `Bearer ${this.token}`, ...(options.body === undefined ? {} : {'content-type': 'application/json'}), ...options.headers}
    const response = await request(new URL(path, this.url), {method, headers, body: options.body === undefined ? undefined : JSON.stringify(options.body)})
    return {status: response.statusCode, type: String(response.headers['content-type'] ?? ''), json: await response.body.json()}
  }

  /** Long-polls from `since` until a message passes `match`. */
  async messageWhere(since: number, match: (item: Item) => boolean): Promise<{item: Item; next: number}> {
    for (let cursor = since; ; ) {
      const {status, json} = await this.call('GET', `/v1/messages?since=${cursor}&timeout=20000`)
      expect(status, JSON.stringify(json)).to.equal(200)
      const item = (json.items as Item[]).find(match)
      if (item) return {item, next: json.next as number}
      cursor = json.next
    }
  }
}

/** A webhook receiver: answers 500 to the first post, 200 to the others. */
class Receiver {
  readonly posts: {headers: IncomingHttpHeaders; body: Item; cursorThen?: number}[] = []
  private readonly server: Server
  private waiting: (() => void)[] = []

  constructor(private readonly onFirst: () => Promise<number>) {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = []
      req.on('data', (chunk: Buffer) => chunks.push(chunk))
      req.on('end', async () => {
        const post: (typeof this.posts)[number] = {headers: req.headers, body: JSON.parse(Buffer.concat(chunks).toString('utf8')) as Item}
        const first = this.posts.length === 0
        this.posts.push(post)
        if (first) post.cursorThen = await this.onFirst()
        res.writeHead(first ? 500 : 200).end()
        for (const wake of this.waiting.splice(0)) wake()
      })
    })
  }

  async start(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve))
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/hook`
  }

  async posted(count: number): Promise<void> {
    while (this.posts.length < count) await new Promise<void>((resolve) => this.waiting.push(resolve))
  }

  close(): Promise<void> {
    this.server.closeAllConnections()
    return new Promise((resolve) => this.server.close(() => resolve()))
  }
}

describe('fastchat daemon: a local JSON API holding the unlocked key (issue 13, part 3)', function () {
  this.timeout(120_000)
  let db: DataSource
  let superserver: RunningSuperserver
  let servers: RunningChatServer[]
  let alice: CliUser
  let bob: CliUser
  let daemon: Started
  let api: Api
  const started: Started[] = []

  before(async () => {
    ;({db, superserver, servers, alice, bob} = await startTwoUserCluster())
    // The one time alice's passphrase is given: to the daemon, at its start.
    daemon = await startCli(['daemon'], alice.env())
    started.push(daemon)
    api = await Api.of(alice, daemon)
  })

  after(async () => {
    for (const process of started) await process.stop()
    // An agent of `unlock` left by a failed test.
    const agent = await bob.readJson<{pid: number}>('daemon.json').catch(() => undefined)
    if (agent) process.kill(agent.pid, 'SIGTERM')
    await stopTwoUserCluster({db, superserver, servers})
  })

  it('writes its URL and a random token to daemon.json, 0600, and refuses requests without the token', async () => {
    expect(daemon.output()).to.match(/^FastChat daemon for alice\S* listening on http:\/\/127\.0\.0\.1:\d+ \(token in .*daemon\.json\)/m)
    expect((await stat(alice.file('daemon.json'))).mode & 0o777).to.equal(0o600)
    expect(Buffer.from(api.token, 'base64url')).to.have.length(32)

    const status = await api.call('GET', '/v1/status')
    expect(status.status).to.equal(200)
    expect(status.json).to.include({username: alice.username, pid: daemon.child.pid, unlocked: true})

    for (const authorization of ['', 'Bearer wrong-token', `Basic ${api.token}`]) {
      const refused = await api.call('GET', '/v1/status', {headers: {authorization}})
      expect(refused.status, authorization).to.equal(401)
      expect(refused.type).to.match(/^application\/problem\+json/)
      expect(refused.json).to.include({status: 401, code: 'FC_UNAUTHORIZED'})
      expect(JSON.stringify(refused.json)).not.to.match(/\n\s+at |\.(ts|js):\d+/)
    }
    // A web page: a DNS-rebound name, or a browser's cross-origin request.
    expect((await api.call('GET', '/v1/status', {headers: {host: 'evil.example:80'}})).json.code).to.equal('FC_FORBIDDEN')
    expect((await api.call('GET', '/v1/status', {headers: {origin: 'https://evil.example'}})).status).to.equal(403)
    expect((await api.call('OPTIONS', '/v1/send')).status).to.equal(403)
    const invalid = await api.call('POST', '/v1/send', {body: {to: bob.username}})
    expect(invalid.json).to.include({status: 400, code: 'FC_VALIDATION'})
  })

  it('POST /v1/send: bob gets it, verified', async () => {
    const sent = await api.call('POST', '/v1/send', {body: {to: bob.username, text: 'hello over plain HTTP'}})
    expect(sent.status, JSON.stringify(sent.json)).to.equal(201)
    expect(sent.json).to.include({to: bob.username})
    expect(sent.json.id).to.be.a('string')

    const inbox = await bob.json<{messages: Item[]}>(['inbox', '--timeout', '10000'])
    const message = inbox.messages.find((m) => m.id === sent.json.id)
    expect(message, JSON.stringify(inbox)).to.include({from: alice.username, text: 'hello over plain HTTP'})
    expect(message!.verification.status).to.equal('valid')
  })

  it('GET /v1/messages long-polls: a message bob sends with the CLI comes back decrypted and verified', async () => {
    const {json: status} = await api.call('GET', '/v1/status')
    const polled = api.messageWhere(status.cursor as number, (item) => item.text === 'hi alice, from the CLI')
    expect((await bob.run(['send', alice.username, 'hi alice, from the CLI'])).code).to.equal(0)
    const {item, next} = await polled
    expect(item).to.include({from: bob.username})
    expect(item.verification.status).to.equal('valid')
    expect(next).to.be.greaterThan(status.cursor as number)
    // With `since`, the stored cursor is the caller's business: it did not move.
    expect((await api.call('GET', '/v1/status')).json.cursor).to.equal(status.cursor)
  })

  it('GET /v1/messages/stream: server-sent events, with an id to resume from', async () => {
    const {json: status} = await api.call('GET', '/v1/status')
    const stop = new AbortController()
    const response = await request(new URL('/v1/messages/stream', api.url), {headers: {authorization: `Bearer ${api.token}`, 'last-event-id': String(status.cursor)}, signal: stop.signal})
    expect(response.headers['content-type']).to.match(/^text\/event-stream/)
    // Events are separated by a blank line; a page's `id:` follows its last item.
    const reading = (async () => {
      let text = ''
      for await (const chunk of response.body as AsyncIterable<Buffer>) {
        text += chunk.toString('utf8')
        const events = text.split('\n\n')
        const at = events.findIndex((event) => event.startsWith('event: message\ndata: ') && (JSON.parse(event.slice(21)) as Item).text === 'streamed to alice')
        const id = events.slice(at + 1).find((event) => event.startsWith('id: '))
        if (at >= 0 && id) return {item: JSON.parse(events[at]!.slice(21)) as Item, id: Number(id.slice(4))}
      }
      throw new Error(`the stream ended:\n${text}`)
    })()
    expect((await bob.run(['send', alice.username, 'streamed to alice'])).code).to.equal(0)
    const {item, id} = await reading
    stop.abort()
    expect(item).to.include({from: bob.username})
    expect(item.verification.status).to.equal('valid')
    expect(id).to.be.greaterThan(status.cursor as number)
  })

  it('alice’s CLI commands use the daemon: no passphrase asked, the same output', async () => {
    const sent = await runWithoutPassphrase(alice, ['send', bob.username, 'sent by the CLI through the daemon'])
    expect(sent.code, sent.stderr).to.equal(0)
    expect(sent.stdout).to.match(new RegExp(`^Sent to ${bob.username} at \\S+ \\(message [0-9a-f-]{36}\\)\\.\\n$`))

    const inbox = await runWithoutPassphrase(alice, ['inbox'])
    expect(inbox.code, inbox.stderr).to.equal(0)
    expect(inbox.stdout).to.match(new RegExp(`^\\[\\S+\\] ${bob.username}: hi alice, from the CLI  ✔ verified$`, 'm'))
    const again = await runWithoutPassphrase(alice, ['inbox', '--json'])
    expect(JSON.parse(again.stdout)).to.deep.include({messages: [], events: []})

    const history = await runWithoutPassphrase(alice, ['history', bob.username, '--json'])
    expect(history.code, history.stderr).to.equal(0)
    const texts = (JSON.parse(history.stdout) as {with: string; messages: Item[]}).messages.map((m) => m.text)
    expect(texts).to.include.members(['hello over plain HTTP', 'sent by the CLI through the daemon', 'streamed to alice'])

    // listen follows the daemon's stream, with no passphrase either, and stops cleanly on Ctrl-C.
    const {FASTCHAT_PASSPHRASE: _p, ...noPassphrase} = {...process.env, ...alice.env()}
    const listener = spawn(process.execPath, [CLI, 'listen', '--json'], {env: noPassphrase, stdio: ['pipe', 'pipe', 'pipe']})
    let listened = ''
    let listenErr = ''
    listener.stdout.on('data', (chunk: Buffer) => (listened += chunk.toString()))
    listener.stderr.on('data', (chunk: Buffer) => (listenErr += chunk.toString()))
    try {
      // listen reads from the stored cursor: a message sent before its first poll is still its first line.
      expect((await bob.run(['send', alice.username, 'to a listen through the daemon'])).code).to.equal(0)
      await eventually(async () => listened.includes('to a listen through the daemon'), `listen to print it (stderr: ${listenErr})`)
      const exited = once(listener, 'exit')
      listener.kill('SIGINT')
      expect((await exited)[0], listenErr).to.equal(0)
    } finally {
      listener.kill('SIGKILL')
    }

    // Group changes too: the daemon makes each new epoch's key.
    const created = await runWithoutPassphrase(alice, ['group', 'create', 'daemon-made', '--member', bob.username, '--json'])
    expect(created.code, created.stderr).to.equal(0)
    const group = JSON.parse(created.stdout) as {id: string; epoch: number; keyedHere: boolean}
    expect(group).to.include({keyedHere: true, epoch: 1})
    const left = await runWithoutPassphrase(alice, ['group', 'leave', group.id, '--json'])
    expect(left.code, left.stderr).to.equal(0)

    // Invitations as well: joining makes the new epoch's key, here in the daemon.
    const invited = JSON.parse((await bob.run(['group', 'create', 'bob-asks', '--member', alice.username, '--json'])).stdout) as {id: string}
    const declinable = JSON.parse((await bob.run(['group', 'create', 'bob-asks-too', '--member', alice.username, '--json'])).stdout) as {id: string}
    const listed = await runWithoutPassphrase(alice, ['group', 'invitations', '--json'])
    expect(listed.code, listed.stderr).to.equal(0)
    expect((JSON.parse(listed.stdout) as {invitations: {group: string; by: string}[]}).invitations.map((i) => [i.group, i.by])).to.deep.include.members([
      [invited.id, bob.username],
      [declinable.id, bob.username],
    ])
    const joined = await runWithoutPassphrase(alice, ['group', 'join', invited.id, '--json'])
    expect(joined.code, joined.stderr).to.equal(0)
    expect(JSON.parse(joined.stdout)).to.include({joined: true, keyedHere: true})
    const declined = await runWithoutPassphrase(alice, ['group', 'decline', declinable.id, '--json'])
    expect(declined.code, declined.stderr).to.equal(0)
    const none = await runWithoutPassphrase(alice, ['group', 'invitations', '--json'])
    expect((JSON.parse(none.stdout) as {invitations: unknown[]}).invitations).to.deep.equal([])

    // The proof that it was the daemon: the same command on its own has no passphrase to unlock the key with.
    const alone = await runWithoutPassphrase(bob, ['send', alice.username, 'bob has no daemon'])
    expect(alone.code).to.equal(1)
    expect(alone.stderr).to.match(/No passphrase for your private key/)
  })

  it('--webhook posts each message until a 2xx, with its id to dedupe; the cursor moves only then', async () => {
    let hooked: Api | undefined
    const receiver = new Receiver(async () => (await hooked!.call('GET', '/v1/status')).json.cursor as number)
    try {
      // Read what came before: the webhook's first post is then this test's message.
      expect((await bob.run(['inbox'])).code).to.equal(0)
      const hook = await startCli(['daemon', '--webhook', await receiver.start()], bob.env())
      started.push(hook)
      hooked = await Api.of(bob, hook)
      const before = (await hooked.call('GET', '/v1/status')).json.cursor as number
      const sent = await api.call('POST', '/v1/send', {body: {to: bob.username, text: 'for the webhook'}})
      expect(sent.status).to.equal(201)

      await receiver.posted(2)
      const [first, second] = receiver.posts
      expect(first!.body).to.include({id: sent.json.id, text: 'for the webhook', from: alice.username})
      expect(first!.body.verification.status).to.equal('valid')
      expect(second!.body).to.deep.equal(first!.body)
      expect(first!.headers['idempotency-key']).to.equal(sent.json.id)
      expect(second!.headers['idempotency-key']).to.equal(sent.json.id)
      expect(first!.headers['x-fastchat-event']).to.equal('message')
      expect(first!.cursorThen, 'not moved while the post was refused').to.equal(before)
      await eventually(async () => ((await hooked!.call('GET', '/v1/status')).json.cursor as number) > before, 'the cursor to move after the 2xx')
      expect(await hook.stop()).to.equal(0)
      expect(existsSync(bob.file('daemon.json')), 'removed on exit').to.equal(false)
    } finally {
      await receiver.close()
    }
  })

  it('unlock and lock: the passphrase once for an agent; after lock it is asked again', async () => {
    const unlocked = await bob.json<{pid: number; at: string; started: boolean}>(['unlock', '--timeout', '5m'])
    expect(unlocked).to.include({started: true, at: bob.file('agent.sock')})
    expect((await stat(bob.file('agent.sock'))).mode & 0o777).to.equal(0o600)

    // The passphrase reached the agent through a pipe: not on its command line, not in its environment.
    for (const file of ['cmdline', 'environ']) expect(await readFile(`/proc/${unlocked.pid}/${file}`, 'utf8'), file).not.to.include(PASSPHRASE)

    const sent = await runWithoutPassphrase(bob, ['send', alice.username, 'sent while unlocked'])
    expect(sent.code, sent.stderr).to.equal(0)

    const locked = await bob.run(['lock'])
    expect(locked.code, locked.stderr).to.equal(0)
    expect(() => process.kill(unlocked.pid, 0), 'the agent is gone').to.throw()
    expect(existsSync(bob.file('daemon.json'))).to.equal(false)
    expect(existsSync(bob.file('agent.sock'))).to.equal(false)

    const refused = await runWithoutPassphrase(bob, ['send', alice.username, 'sent after lock'])
    expect(refused.code).to.equal(1)
    expect(refused.stderr).to.match(/No passphrase for your private key/)
  })
})
