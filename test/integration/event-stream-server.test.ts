import {expect} from 'chai'
import type {DataSource} from 'typeorm'

import type {RunningChatServer} from '../../server/main.js'
import {createDataSource} from '../../storage/data-source.js'
import {EventStreamRepository} from '../../storage/repositories/event-stream.repository.js'
import {fakeCiphertext, poll, registerAndLogin, send, type TestUser, uniqueName} from '../helpers/api.js'
import {CLUSTER_AUTH, startTestServer} from '../helpers/cluster.js'
import {http} from '../helpers/http.js'
import {dataOf, openStream, type RawStream} from '../helpers/sse.js'

/** A counter of the server's /metrics, by its label set as printed. */
async function metric(server: RunningChatServer, name: string): Promise<number> {
  const text = (await http('GET', `${server.url}/metrics`, {headers: CLUSTER_AUTH})).body as string
  const line = text.split('\n').find((l) => l.startsWith(name))
  return line ? Number(line.split(' ')[1]) : 0
}

const streamOf = (user: TestUser, query = 'since=0', headers: Record<string, string> = {}, server = user.server) =>
  openStream(`${server}/v1/events?${query}`, {...user.auth, ...headers})

/** The server side of GET /v1/events as a stream (SSE): docs/api.md, "Streaming events (SSE)". */
describe('event streams (GET /v1/events, text/event-stream)', function () {
  this.timeout(60_000)
  let a: RunningChatServer
  let b: RunningChatServer
  let db: DataSource
  let alice: TestUser
  let bob: TestUser
  const open: RawStream[] = []
  const track = (stream: RawStream) => (open.push(stream), stream)

  before(async () => {
    db = await createDataSource({url: process.env.DATABASE_URL!}).initialize()
    ;[a, b] = await Promise.all([startTestServer(undefined, {FASTCHAT_STREAM_HEARTBEAT_MS: '300'}), startTestServer()])
  })
  beforeEach(async () => {
    alice = await registerAndLogin(a.url, uniqueName('alice'), 'alice')
    bob = await registerAndLogin(b.url, uniqueName('bob'), 'bob')
  })
  afterEach(() => {
    for (const stream of open.splice(0)) stream.close()
  })
  after(async () => {
    await Promise.all([a.close(), b.close()])
    await db.destroy()
  })

  it('opens with the ready event, writes each message as it commits, byte for byte what a poll answers', async () => {
    const stream = track(await streamOf(bob))
    expect(stream.status).to.equal(200)
    expect(stream.headers['content-type']).to.equal('text/event-stream; charset=utf-8')
    expect(stream.headers['cache-control']).to.equal('no-store')
    expect(stream.headers['x-accel-buffering']).to.equal('no')
    expect(stream.headers['x-fastchat-heartbeat-ms']).to.equal('15000')
    expect(stream.headers['x-content-type-options'], 'the same security headers as every answer').to.equal('nosniff')
    const ready = await stream.next()
    expect(ready.event).to.equal('ready')
    expect(dataOf(ready)).to.deep.equal({next: 0, heartbeatMs: 15_000})

    const memoryBefore = await metric(b, 'fastchat_server_listener_answers_total{source="memory"}')
    // From the other server: the push carries the message, so server b answers from memory.
    const sent = await send(alice, bob.username, fakeCiphertext('hello'))
    expect(sent.status).to.equal(201)
    const event = await stream.next()
    expect(event.id).to.equal('1')
    expect(event.event).to.equal('message')
    const polled = await poll(bob, 0)
    expect(event.data).to.equal(JSON.stringify(polled.body.events[0]))
    expect(dataOf(event)).to.include({seq: 1, type: 'message', id: sent.body.id, from: alice.username})
    expect(await metric(b, 'fastchat_server_listener_answers_total{source="memory"}')).to.be.above(memoryBefore)
  })

  it('resumes after Last-Event-ID, which overrides since', async () => {
    for (let i = 1; i <= 3; i++) expect((await send(alice, bob.username, fakeCiphertext(i))).status).to.equal(201)
    const stream = track(await streamOf(bob, 'since=0', {'last-event-id': '1'}))
    expect(dataOf(await stream.next())).to.deep.include({next: 1})
    expect((await stream.next()).id).to.equal('2')
    expect((await stream.next()).id).to.equal('3')
  })

  it('writes a heartbeat after its interval of silence', async () => {
    const carol = await registerAndLogin(a.url, uniqueName('carol'), 'carol')
    const stream = track(await streamOf(carol))
    expect(stream.headers['x-fastchat-heartbeat-ms']).to.equal('300')
    expect((await stream.next()).event).to.equal('ready')
    expect(await stream.next(5_000)).to.deep.equal({comment: 'heartbeat'})
  })

  it('answers a cursor it cannot serve, a bad Last-Event-ID and a missing token with problems, before opening', async () => {
    await send(alice, bob.username, fakeCiphertext(1))
    const ahead = track(await streamOf(bob, 'since=5'))
    expect(ahead.status).to.equal(409)
    expect(ahead.headers['content-type']).to.match(/^application\/problem\+json/)
    expect(JSON.parse(await ahead.body)).to.include({code: 'FC_CURSOR_AHEAD', last: 1})

    const bad = track(await streamOf(bob, 'since=0', {'last-event-id': 'x1'}))
    expect(bad.status).to.equal(400)
    expect(JSON.parse(await bad.body)).to.include({code: 'FC_VALIDATION'})

    const anonymous = track(await openStream(`${bob.server}/v1/events?since=0`, {}))
    expect(anonymous.status).to.equal(401)

    const [{id}] = await db.query('SELECT id FROM users WHERE username = $1', [bob.username])
    await db.query(`UPDATE events SET created_at = now() - interval '40 days' WHERE recipient_id = $1 AND seq = 1`, [id])
    await new EventStreamRepository(db).prune(30 * 24 * 3_600_000)
    const gone = track(await streamOf(bob, 'since=0'))
    expect(gone.status).to.equal(410)
    expect(JSON.parse(await gone.body)).to.include({code: 'FC_CURSOR_EXPIRED', oldest: 1})
  })

  it('ends a stream replaced by a newer one of the same client, and counts streams against the per-user cap', async () => {
    const first = track(await streamOf(bob, 'since=0', {'x-fastchat-client': 'laptop'}))
    expect((await first.next()).event).to.equal('ready')
    const second = track(await streamOf(bob, 'since=0', {'x-fastchat-client': 'laptop'}))
    expect((await second.next()).event).to.equal('ready')
    expect((await first.until((event) => event.event !== undefined)).event).to.equal('superseded')
    await first.ended
    // The newer one goes on.
    await send(alice, bob.username, fakeCiphertext(1))
    expect((await second.until((event) => event.event === 'message')).id).to.equal('1')
  })

  it('delivers across servers with peer push off, by the re-check, within a second', async () => {
    const c = await startTestServer(undefined, {FASTCHAT_PEER_PUSH: 'off'})
    try {
      const stream = track(await streamOf(bob, 'since=0', {}, c.url))
      expect((await stream.next()).event).to.equal('ready')
      const sentAt = Date.now()
      await send(alice, bob.username, fakeCiphertext(1))
      expect((await stream.next(3_000)).id).to.equal('1')
      expect(Date.now() - sentAt).to.be.below(1_000)
    } finally {
      await c.close()
    }
  })

  it('skips nothing under 1,000 concurrent sends: every event once, gap-free, in seq order, on a stream and on a poll loop alike', async () => {
    const senders = await Promise.all(Array.from({length: 20}, (_, i) => registerAndLogin(i % 2 ? a.url : b.url, uniqueName('s'), 'alice')))
    const stream = track(await streamOf(bob))
    expect((await stream.next()).event).to.equal('ready')
    const polled: number[] = []
    let polling = true
    const pollLoop = (async () => {
      let cursor = 0
      while (polling || cursor < 1_000) {
        const answer = await poll(bob, cursor, 1_000, a.url)
        for (const event of answer.body.events) polled.push(event.seq)
        cursor = answer.body.next
        if (!polling && answer.body.events.length === 0) break
      }
    })()
    const sends = await Promise.all(
      Array.from({length: 1_000}, (_, i) => send(senders[i % senders.length]!, bob.username, fakeCiphertext(i))),
    )
    expect(sends.every((answer) => answer.status === 201)).to.equal(true)
    const streamed: number[] = []
    while (streamed.length < 1_000) {
      const event = await stream.next(10_000)
      if (event.id) streamed.push(Number(event.id))
    }
    polling = false
    await pollLoop
    const expected = Array.from({length: 1_000}, (_, i) => i + 1)
    expect(streamed).to.deep.equal(expected)
    expect(polled).to.deep.equal(expected)
  })

  it('gives a reader that falls far behind everything on the same stream, at its own pace (backpressure, not a cut)', async () => {
    const carol = await registerAndLogin(b.url, uniqueName('carol'), 'carol')
    const {request} = await import('node:http')
    const body = await new Promise<import('node:http').IncomingMessage>((resolve, reject) => {
      const req = request(`${carol.server}/v1/events?since=0`, {headers: {...carol.auth, accept: 'text/event-stream'}}, resolve)
      req.on('error', reject)
      req.end()
    })
    body.pause() // the client reads nothing while ~12 MiB of events commit
    let ended = false
    body.on('end', () => (ended = true))
    const big = (i: number) => fakeCiphertext(`${i}-${'A'.repeat(60_000)}`)
    const count = 200
    for (let i = 0; i < count; i += 20) {
      const sent = await Promise.all(Array.from({length: 20}, (_, k) => send(alice, carol.username, big(i + k))))
      expect(sent.every((answer) => answer.status === 201)).to.equal(true)
    }
    const ids: number[] = []
    let buffer = ''
    body.setEncoding('utf8')
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`only ${ids.length} of ${count} events arrived`)), 30_000)
      body.on('data', (chunk: string) => {
        buffer += chunk
        for (let at = buffer.indexOf('\n\n'); at >= 0; at = buffer.indexOf('\n\n')) {
          const id = /^id: (\d+)$/m.exec(buffer.slice(0, at))
          if (id) ids.push(Number(id[1]))
          buffer = buffer.slice(at + 2)
        }
        if (ids.length >= count) {
          clearTimeout(timer)
          resolve()
        }
      })
      body.resume()
    })
    expect(ids).to.deep.equal(Array.from({length: count}, (_, i) => i + 1))
    expect(ended, 'the stream was never cut').to.equal(false)
    body.destroy()
  })

  it('ends every stream with FC_DRAINING when the server drains', async () => {
    const c = await startTestServer()
    const stream = track(await streamOf(bob, 'since=0', {}, c.url))
    expect((await stream.next()).event).to.equal('ready')
    const closing = c.close()
    const problem = await stream.until((event) => event.event !== undefined)
    expect(problem.event).to.equal('problem')
    expect(dataOf(problem)).to.include({status: 503, code: 'FC_DRAINING'})
    await stream.ended
    await closing
  })
})
