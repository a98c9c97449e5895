import {request as httpRequest} from 'node:http'
import {createServer, type IncomingMessage, type Server} from 'node:http'
import type {AddressInfo} from 'node:net'

import {expect} from 'chai'
import {request} from 'undici'

import {FastChatClient, isMessage, MemoryStore, type MessagesOptions, type Received, type Report} from '../../client/index.js'
import type {RunningChatServer} from '../../server/main.js'
import type {RunningSuperserver} from '../../superserver/main.js'
import {PASSWORD, uniqueName} from '../helpers/api.js'
import {CliUser, removeCliHomes, spawnCli} from '../helpers/cli.js'
import {startTestServer, startTestSuperserver, waitForHealthy} from '../helpers/cluster.js'
import {FIXTURE_PASSPHRASE, loadFixtureKey} from '../helpers/keys.js'
import {eventually, startCli} from '../helpers/processes.js'

/**
 * Issue 14, item 1, the client side: the library, `fastchat listen` and the
 * daemon read the event stream (SSE) first and fall back to the long poll by
 * themselves, losing nothing: through a proxy that buffers the stream, one
 * that refuses it, one that cuts it. Real servers; the proxies are small
 * node:http ones in front of the real chat server.
 */

/** The chat server's heartbeat here: a quiet stream still shows it is alive several times a second. */
const HEARTBEAT_MS = 200

type ProxyMode = 'pass' | 'buffer' | 'bad-gateway' | 'json' | 'cut'

/**
 * A proxy in front of the chat server. `buffer`: passes the headers at once
 * and holds every answer's body until the upstream answer ends (for a stream:
 * never). `bad-gateway`: answers an HTML 502 to `Accept: text/event-stream`.
 * `json`: asks for the JSON poll instead (a proxy that drops the header, or
 * a server that does not stream). `cut`: ends each stream cleanly after the
 * first event it carried.
 */
class TestProxy {
  /** The URL (path and query) of every stream request it saw. */
  readonly streams: string[] = []
  private readonly server: Server

  constructor(
    private readonly upstream: string,
    /** May change between requests: a proxy fixed, or left behind. */
    public mode: ProxyMode,
  ) {
    this.server = createServer((req, res) => {
      const stream = /text\/event-stream/.test(req.headers.accept ?? '')
      if (stream) this.streams.push(req.url ?? '')
      const {mode} = this
      if (stream && mode === 'bad-gateway') {
        res.writeHead(502, {'content-type': 'text/html'})
        res.end('<html><body><h1>502 Bad Gateway</h1></body></html>')
        return
      }
      const target = new URL(req.url ?? '/', this.upstream)
      const headers = {...req.headers, host: target.host, ...(stream && mode === 'json' ? {accept: 'application/json'} : {})}
      const forward = httpRequest(target, {method: req.method, headers}, (answer: IncomingMessage) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers)
        if (this.mode === 'buffer') {
          res.flushHeaders()
          const held: Buffer[] = []
          answer.on('data', (chunk: Buffer) => held.push(chunk))
          answer.on('end', () => res.end(Buffer.concat(held)))
        } else if (this.mode === 'cut' && stream) {
          let seen = ''
          answer.on('data', (chunk: Buffer) => {
            res.write(chunk)
            seen += chunk.toString()
            // Once an event with an id is whole (its blank line passed): the end of this stream.
            const event = seen.search(/(^|\n)id: /)
            if (event >= 0 && seen.indexOf('\n\n', event) >= 0) {
              res.end()
              forward.destroy()
            }
          })
          answer.on('end', () => res.end())
        } else {
          answer.pipe(res)
        }
      })
      forward.on('error', () => res.destroy())
      res.on('close', () => forward.destroy())
      req.pipe(forward)
    })
  }

  async start(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve))
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`
  }

  /** The `since` of each stream request, in order. */
  get sinces(): number[] {
    return this.streams.map((url) => Number(new URL(url, 'http://x').searchParams.get('since')))
  }

  close(): Promise<void> {
    this.server.closeAllConnections()
    return new Promise((resolve) => this.server.close(() => resolve()))
  }
}

/** messages() running in the background: what it handed out and reported so far. */
interface Following {
  items: Received[]
  texts(): string[]
  failure?: unknown
  stop(): Promise<void>
}

function follow(client: FastChatClient, options: MessagesOptions = {}): Following {
  const stop = new AbortController()
  const following: Following = {
    items: [],
    texts: () => following.items.filter(isMessage).map((item) => ('text' in item ? String(item.text) : '')),
    stop: async () => {
      stop.abort()
      await done
    },
  }
  const done = (async () => {
    try {
      for await (const item of client.messages({...options, signal: stop.signal})) following.items.push(item)
    } catch (error) {
      following.failure = error
    }
  })()
  return following
}

describe('the event stream, client side: stream first, long-poll as the fallback (issue 14)', function () {
  this.timeout(90_000)

  let superserver: RunningSuperserver
  let server: RunningChatServer
  let alice: FastChatClient
  const proxies: TestProxy[] = []
  const running: Following[] = []

  /** A new user (bob's fixture key) with a store of its own, reading through `through` (a proxy's URL) if given. */
  async function receiver(through?: string): Promise<{client: FastChatClient; store: MemoryStore; reports: Report[]}> {
    const store = new MemoryStore()
    const key = await loadFixtureKey('bob')
    await store.saveKeys({publicKey: key.publicKey, privateKey: key.privateKey})
    const reports: Report[] = []
    const options = {store, passphrase: async () => FIXTURE_PASSPHRASE, onReport: (report: Report) => reports.push(report)}
    await FastChatClient.register({...options, username: uniqueName('bob'), password: PASSWORD, superserver: superserver.url, newPassphrase: async () => FIXTURE_PASSPHRASE})
    if (through) await store.saveProfile({...(await store.profile())!, server: through})
    return {client: await FastChatClient.open(options), store, reports}
  }

  async function proxy(mode: ProxyMode): Promise<{proxy: TestProxy; url: string}> {
    const made = new TestProxy(server.url, mode)
    proxies.push(made)
    return {proxy: made, url: await made.start()}
  }

  const transports = (reports: Report[]) => reports.filter((report) => report.type === 'transport')
  const sendAll = async (to: string, texts: string[]) => {
    for (const text of texts) await alice.send(to, text)
  }
  const following = (client: FastChatClient, options: MessagesOptions = {}) => {
    const made = follow(client, options)
    running.push(made)
    return made
  }
  const received = (reader: Following, count: number) =>
    eventually(async () => {
      if (reader.failure) throw reader.failure
      return reader.texts().length >= count
    }, `${count} messages`)

  before(async () => {
    superserver = await startTestSuperserver()
    server = await startTestServer(superserver.url, {FASTCHAT_STREAM_HEARTBEAT_MS: String(HEARTBEAT_MS)})
    await waitForHealthy(superserver.url, [server.url])
    const store = new MemoryStore()
    const key = await loadFixtureKey('alice')
    await store.saveKeys({publicKey: key.publicKey, privateKey: key.privateKey})
    alice = await FastChatClient.register({
      store,
      username: uniqueName('alice'),
      password: PASSWORD,
      superserver: superserver.url,
      passphrase: async () => FIXTURE_PASSPHRASE,
      newPassphrase: async () => FIXTURE_PASSPHRASE,
    })
  })

  afterEach(async () => {
    for (const reader of running.splice(0)) await reader.stop()
    for (const made of proxies.splice(0)) await made.close()
  })

  after(async () => {
    await server?.close()
    await superserver?.close()
  })

  it('messages() in auto mode reads the stream, and hands out what is sent after it opened, in order, once', async () => {
    const bob = await receiver()
    const reader = following(bob.client)
    await eventually(async () => transports(bob.reports).length > 0, 'a transport to be chosen')
    const texts = ['one', 'two', 'three', 'four', 'five']
    await sendAll(bob.client.username, texts)
    await received(reader, texts.length)
    // Quiet for several heartbeats, then more: the stream stayed up, nothing came twice.
    await new Promise((resolve) => setTimeout(resolve, HEARTBEAT_MS * 4))
    await sendAll(bob.client.username, ['six'])
    await received(reader, texts.length + 1)
    expect(reader.texts()).to.deep.equal([...texts, 'six'])
    expect(transports(bob.reports)).to.deep.equal([{type: 'transport', transport: 'stream'}])
    expect(bob.reports.filter((report) => report.type === 'connection.lost')).to.deep.equal([])
    // Committed once the items were taken.
    await eventually(async () => (await bob.client.cursor()) === 6, 'the cursor to be 6')
  })

  it('falls back to the long poll within the idle interval behind a proxy that buffers the stream, and loses nothing sent before, during or after', async () => {
    const {proxy: buffering, url} = await proxy('buffer')
    const bob = await receiver(url)
    await sendAll(bob.client.username, ['before 1', 'before 2'])
    const idleMs = 1_000
    const started = Date.now()
    const reader = following(bob.client, {streamIdleMs: idleMs})
    // While the client waits for the stream's first bytes, which the proxy holds.
    await eventually(async () => buffering.streams.length === 1, 'the stream to be asked for')
    await sendAll(bob.client.username, ['during 1', 'during 2'])
    const fallback = await eventually(async () => transports(bob.reports).find((report) => report.transport === 'poll'), 'the fall back')
    const took = Date.now() - started
    expect(took, 'waited for the interval').to.be.at.least(idleMs - 50)
    expect(took, 'within the interval').to.be.below(idleMs + 3_000)
    expect(fallback.reason).to.match(/nothing came on the stream within 1000 ms/)
    await sendAll(bob.client.username, ['after 1', 'after 2'])
    await received(reader, 6)
    expect(reader.texts()).to.deep.equal(['before 1', 'before 2', 'during 1', 'during 2', 'after 1', 'after 2'])
    // It stays on the long poll: one stream request only.
    expect(transports(bob.reports)).to.deep.equal([fallback])
    expect(buffering.streams).to.have.length(1)
  })

  it('falls back at once when a proxy answers the stream request with a 502 page', async () => {
    const {proxy: refusing, url} = await proxy('bad-gateway')
    const bob = await receiver(url)
    await sendAll(bob.client.username, ['first'])
    const started = Date.now()
    const reader = following(bob.client, {streamIdleMs: 30_000})
    const fallback = await eventually(async () => transports(bob.reports).find((report) => report.transport === 'poll'), 'the fall back')
    expect(Date.now() - started).to.be.below(2_000)
    expect(fallback.reason).to.match(/502/)
    await sendAll(bob.client.username, ['second'])
    await received(reader, 2)
    expect(reader.texts()).to.deep.equal(['first', 'second'])
    expect(refusing.streams).to.have.length(1)
    expect(bob.reports.filter((report) => report.type === 'connection.lost')).to.deep.equal([])
  })

  it('falls back at once when the stream request is answered as JSON (a proxy that drops Accept, a server that does not stream)', async () => {
    const {proxy: dropping, url} = await proxy('json')
    const bob = await receiver(url)
    await sendAll(bob.client.username, ['first'])
    const started = Date.now()
    const reader = following(bob.client, {streamIdleMs: 30_000})
    const fallback = await eventually(async () => transports(bob.reports).find((report) => report.transport === 'poll'), 'the fall back')
    expect(Date.now() - started).to.be.below(2_000)
    expect(fallback.reason).to.match(/answered as application\/json.*not text\/event-stream/)
    await sendAll(bob.client.username, ['second'])
    await received(reader, 2)
    // What the JSON answer carried was not taken: 'first' came once, by the poll.
    expect(reader.texts()).to.deep.equal(['first', 'second'])
    expect(dropping.streams).to.have.length(1)
  })

  it('tries the stream again streamRetryMs after a fall back, and goes back to it when it works', async () => {
    const {proxy: flaky, url} = await proxy('bad-gateway')
    const bob = await receiver(url)
    const reader = following(bob.client, {streamRetryMs: 1_500, waitMs: 500})
    await eventually(async () => transports(bob.reports).length > 0, 'the fall back')
    await sendAll(bob.client.username, ['polled'])
    await received(reader, 1)
    flaky.mode = 'pass'
    await eventually(async () => transports(bob.reports).length === 2, 'the stream again', 5_000)
    await sendAll(bob.client.username, ['streamed'])
    await received(reader, 2)
    expect(reader.texts()).to.deep.equal(['polled', 'streamed'])
    expect(transports(bob.reports).map((report) => report.transport)).to.deep.equal(['poll', 'stream'])
    // One refused, then (at least) one more: another retry is refused too if the first came before the proxy was fixed.
    expect(flaky.streams.length).to.be.at.least(2)
  })

  it("transport 'poll' never opens a stream", async () => {
    const {proxy: watching, url} = await proxy('pass')
    const bob = await receiver(url)
    const reader = following(bob.client, {transport: 'poll'})
    await eventually(async () => transports(bob.reports).length > 0, 'a transport to be chosen')
    await sendAll(bob.client.username, ['polled 1', 'polled 2'])
    await received(reader, 2)
    expect(reader.texts()).to.deep.equal(['polled 1', 'polled 2'])
    expect(transports(bob.reports)).to.deep.equal([{type: 'transport', transport: 'poll'}])
    expect(watching.streams).to.deep.equal([])
  })

  it('reopens a stream that ends from the cursor, on the stream, losing and repeating nothing', async () => {
    const {proxy: cutting, url} = await proxy('cut')
    const bob = await receiver(url)
    const reader = following(bob.client)
    await eventually(async () => transports(bob.reports).length > 0, 'a transport to be chosen')
    const texts = ['a', 'b', 'c']
    for (const [i, text] of texts.entries()) {
      await sendAll(bob.client.username, [text])
      await received(reader, i + 1)
    }
    expect(reader.texts()).to.deep.equal(texts)
    expect(transports(bob.reports)).to.deep.equal([{type: 'transport', transport: 'stream'}])
    // Each stream ended after one event; each reopening resumed after the last one handed out.
    await eventually(async () => cutting.streams.length >= 4, 'the stream to be reopened after the third')
    expect(cutting.sinces.slice(0, 4)).to.deep.equal([0, 1, 2, 3])
  })

  it('a cursor ahead of the stream is answered as for the long poll (409, reset), then streamed from', async () => {
    const bob = await receiver()
    await bob.store.saveState({cursor: 1_000, recentIds: []})
    const reader = following(bob.client, {transport: 'stream'})
    await eventually(async () => bob.reports.some((report) => report.type === 'cursor.reset'), 'the cursor reset')
    await sendAll(bob.client.username, ['after the reset'])
    await received(reader, 1)
    expect(reader.texts()).to.deep.equal(['after the reset'])
    expect(bob.reports.filter((report) => report.type !== 'key.pinned')).to.deep.equal([
      {type: 'cursor.reset', from: 1_000, to: 0, reason: 'ahead'},
      {type: 'transport', transport: 'stream'},
    ])
  })

  describe('fastchat listen and the daemon', () => {
    let carol: CliUser

    before(async () => {
      carol = await CliUser.create('carol', superserver.url)
      await carol.register()
    })

    after(async () => {
      await removeCliHomes()
    })

    /** `fastchat ARGS` as carol until stopped, with what it printed. */
    async function listening(args: string[], until: (out: {stdout: string; stderr: string}) => boolean, what: string) {
      const run = spawnCli(args, carol.env())
      try {
        await eventually(async () => until({stdout: run.stdout(), stderr: run.stderr()}), `${what} (stdout: ${run.stdout()}, stderr: ${run.stderr()})`, 20_000)
      } finally {
        run.child.kill('SIGINT')
      }
      return {stdout: run.stdout(), stderr: run.stderr()}
    }

    it('`listen --json` prints the transport as a JSON line of its own, then the messages', async () => {
      let sent = false
      const {stdout, stderr} = await listening(
        ['listen', '--json', '--transport', 'stream'],
        (out) => {
          if (!sent && out.stdout.includes('"transport"')) {
            sent = true
            void alice.send(carol.username, 'to the stream')
          }
          return out.stdout.includes('to the stream')
        },
        'the message',
      )
      const lines = stdout.trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>)
      expect(lines[0]).to.deep.equal({type: 'transport', transport: 'stream'})
      expect(lines[1]).to.include({from: alice.username, text: 'to the stream'})
      expect(stderr).to.equal('')
    })

    it('`listen --verbose` says the transport on stderr; without it, nothing is said', async () => {
      const polled = await listening(['listen', '--transport', 'poll', '--verbose'], (out) => out.stderr.includes('Reading events'), 'the transport line')
      expect(polled.stderr).to.match(/^Reading events by long poll\.$/m)
      let sent = false
      const quiet = await listening(
        ['listen'],
        (out) => {
          if (!sent && out.stderr.includes('Listening as')) {
            sent = true
            void alice.send(carol.username, 'quietly')
          }
          return out.stdout.includes('quietly')
        },
        'the message',
      )
      expect(quiet.stderr).not.to.match(/Reading events/)
    })

    it("the daemon's stream reads the chat server's stream, and /v1/status says so", async () => {
      const daemon = await startCli(['daemon'], carol.env())
      try {
        const info = await carol.readJson<{url: string; token: string}>('daemon.json')
        const authorization = `Bearer ${info.token}`
        const status = async () => (await (await request(`${info.url}/v1/status`, {headers: {authorization}})).body.json()) as {transport?: string | null}
        expect((await status()).transport).to.equal(null)
        const stream = await request(`${info.url}/v1/messages/stream?since=0`, {headers: {authorization}})
        let text = ''
        stream.body.setEncoding('utf8').on('data', (chunk: string) => (text += chunk))
        await eventually(async () => (await status()).transport === 'stream', "the daemon's transport to be the stream")
        await alice.send(carol.username, 'through the daemon')
        await eventually(async () => text.includes('through the daemon'), `the message on the daemon's stream (so far: ${text})`)
        expect(daemon.output()).to.match(/Reading events as a stream \(SSE\)\./)
        stream.body.destroy()
        await eventually(async () => (await status()).transport === null, 'the follower to be gone')

        // `listen` through the daemon follows the daemon's stream, which streams from the chat server.
        const listener = spawnCli(['listen', '--json'], carol.env())
        try {
          await eventually(async () => (await status()).transport === 'stream', "listen's follower in the daemon to stream")
          await alice.send(carol.username, 'to listen through the daemon')
          await eventually(async () => listener.stdout().includes('to listen through the daemon'), `listen to print it (stderr: ${listener.stderr()})`)
        } finally {
          listener.child.kill('SIGINT')
        }
      } finally {
        await daemon.stop()
      }
    })
  })
})
