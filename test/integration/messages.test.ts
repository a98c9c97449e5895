import {expect} from 'chai'
import type {DataSource} from 'typeorm'

import type {RunningChatServer} from '../../server/main.js'
import {createDataSource} from '../../storage/data-source.js'
import {fakeCiphertext, poll, registerAndLogin, send, type TestUser, uniqueName} from '../helpers/api.js'
import {CLUSTER_AUTH, startTestServer, waitForListeners} from '../helpers/cluster.js'
import {http} from '../helpers/http.js'

const countMessages = async (db: DataSource): Promise<number> => (await db.query('SELECT count(*)::int AS n FROM messages'))[0].n

describe('messages and events', () => {
  let a: RunningChatServer
  let b: RunningChatServer
  let db: DataSource
  let alice: TestUser
  let bob: TestUser

  before(async () => {
    db = await createDataSource({url: process.env.DATABASE_URL!}).initialize()
    ;[a, b] = await Promise.all([startTestServer(), startTestServer()])
  })
  beforeEach(async () => {
    alice = await registerAndLogin(a.url, uniqueName('alice'), 'alice')
    bob = await registerAndLogin(b.url, uniqueName('bob'), 'bob')
  })
  after(async () => {
    await Promise.all([a.close(), b.close()])
    await db.destroy()
  })

  it('delivers a message from a sender on one server to a poll waiting on another, within a second', async () => {
    const waiting = poll(bob, 0, 10_000)
    await waitForListeners(b.url, 1) // the poll is parked on server b
    const sentAt = Date.now()
    const sent = await send(alice, bob.username, fakeCiphertext('hello'), 'k1')
    expect(sent.status).to.equal(201)
    expect(sent.body.id).to.be.a('string')
    const answer = await waiting
    const elapsed = Date.now() - sentAt
    expect(answer.status).to.equal(200)
    expect(elapsed, 'poll answered after the send').to.be.lessThan(1_000)
    expect(answer.body.next).to.equal(1)
    expect(answer.body.events).to.have.length(1)
    expect(answer.body.events[0]).to.deep.equal({
      seq: 1,
      type: 'message',
      id: sent.body.id,
      from: alice.username,
      to: {user: bob.username},
      kind: 'text',
      ciphertext: fakeCiphertext('hello'),
      sentAt: sent.body.sentAt,
    })
  })

  it('answers polls (served outside Express) with the same headers, metrics and problems as every route', async () => {
    const ok = await poll(bob, 0, 0)
    expect(ok.status).to.equal(200)
    expect(ok.headers.get('content-type')).to.match(/^application\/json/)
    expect(ok.headers.get('cache-control')).to.equal('no-store')
    expect(ok.headers.get('x-content-type-options')).to.equal('nosniff')
    expect(ok.headers.get('content-security-policy')).to.include("default-src 'self'")
    const revoked = await http('GET', `${a.url}/v1/events?since=0&timeout=0`, {headers: {authorization: `Bearer ${'A'.repeat(43)}`}})
    expect(revoked.status).to.equal(401)
    expect(revoked.headers.get('www-authenticate')).to.equal('Bearer')
    expect(revoked.body).to.include({code: 'FC_UNAUTHORIZED', instance: '/v1/events'})
    const odd = await http('GET', `${a.url}/v1/events?since=x`, {headers: bob.auth})
    expect(odd.status).to.equal(400)
    expect(odd.body.code).to.equal('FC_VALIDATION')
    const metrics = (await http('GET', `${a.url}/metrics`, {headers: CLUSTER_AUTH})).body as string
    expect(metrics).to.match(/fastchat_server_http_requests_total\{method="GET",route="\/v1\/events",status="401"\} [1-9]/)
  })

  it('pages a long stream without waiting: a poll after a full page reads on at once', async () => {
    for (let i = 0; i < 5; i++) await send(alice, bob.username, fakeCiphertext(`page ${i}`))
    const first = await poll(bob, 0, 0, bob.server, 2)
    expect(first.body.events.map((e: {seq: number}) => e.seq)).to.deep.equal([1, 2])
    const started = Date.now()
    const second = await poll(bob, 2, 5_000, bob.server, 2)
    expect(second.body.events.map((e: {seq: number}) => e.seq)).to.deep.equal([3, 4])
    const third = await poll(bob, 4, 5_000, bob.server, 2)
    expect(third.body.events.map((e: {seq: number}) => e.seq)).to.deep.equal([5])
    expect(Date.now() - started, 'no page waited for a wake-up').to.be.lessThan(1_000)
    // The head was reached: the next poll parks, and the next send wakes it.
    const waiting = poll(bob, 5, 5_000)
    await new Promise((resolve) => setTimeout(resolve, 100))
    await send(alice, bob.username, fakeCiphertext('after the pages'))
    expect((await waiting).body.events.map((e: {seq: number}) => e.seq)).to.deep.equal([6])
  })

  it('returns an idle poll empty after its timeout, with next unchanged', async () => {
    await send(alice, bob.username, fakeCiphertext(1))
    const started = Date.now()
    const answer = await poll(bob, 1, 300)
    expect(answer.status).to.equal(200)
    expect(answer.body).to.deep.equal({events: [], next: 1})
    expect(Date.now() - started).to.be.at.least(290)
  })

  it('delivers every message of 20 concurrent senders exactly once, in cursor order, none skipped', async function () {
    this.timeout(120_000)
    const SENDERS = 20
    const EACH = 50
    const senders = await Promise.all(
      Array.from({length: SENDERS}, (_, i) => registerAndLogin(i % 2 ? a.url : b.url, uniqueName(`s${i}x`), 'carol')),
    )
    const received: {seq: number; ciphertext: string}[] = []
    let cursor = 0
    let sending = true
    // The reader walks the cursor *while* the senders commit: the case that skips with a global serial.
    const reader = (async () => {
      while (sending || received.length < SENDERS * EACH) {
        const answer = await poll(bob, cursor, 1_000, bob.server, 37)
        expect(answer.status).to.equal(200)
        for (const event of answer.body.events) received.push({seq: event.seq, ciphertext: event.ciphertext})
        cursor = answer.body.next
        if (!sending && answer.body.events.length === 0) break
      }
    })()
    await Promise.all(
      senders.map(async (sender, s) => {
        for (let i = 0; i < EACH; i++) {
          const answer = await send(sender, bob.username, fakeCiphertext(`${s}-${i}`), `${s}-${i}`)
          expect(answer.status).to.equal(201)
        }
      }),
    )
    sending = false
    await reader
    expect(received).to.have.length(SENDERS * EACH)
    expect(received.map((e) => e.seq)).to.deep.equal(Array.from({length: SENDERS * EACH}, (_, i) => i + 1))
    expect(new Set(received.map((e) => e.ciphertext)).size).to.equal(SENDERS * EACH)
    // Each sender's messages arrive in the order it sent them.
    for (let s = 0; s < SENDERS; s++) {
      const mine = received.filter((e) => e.ciphertext.includes(`wcBMA${s}-`)).map((e) => Number(/-(\d+)\n/.exec(e.ciphertext)![1]))
      expect(mine).to.deep.equal(Array.from({length: EACH}, (_, i) => i))
    }
  })

  it('stores a retried send with the same Idempotency-Key once', async () => {
    const before = await countMessages(db)
    const first = await send(alice, bob.username, fakeCiphertext('once'), 'retry-me')
    const again = await send(alice, bob.username, fakeCiphertext('once'), 'retry-me', b.url)
    const concurrent = await Promise.all([1, 2, 3].map(() => send(alice, bob.username, fakeCiphertext('once'), 'retry-me')))
    expect(first.status).to.equal(201)
    for (const answer of [again, ...concurrent]) expect(answer.body).to.deep.equal(first.body)
    expect(await countMessages(db)).to.equal(before + 1)
    const events = await poll(bob, 0)
    expect(events.body.events).to.have.length(1)

    const reused = await send(alice, bob.username, fakeCiphertext('different'), 'retry-me')
    expect(reused.status).to.equal(409)
    expect(reused.body.code).to.equal('FC_IDEMPOTENCY_KEY_REUSED')
    // The same key from another sender is another message.
    const other = await registerAndLogin(a.url, uniqueName('other'), 'carol')
    expect((await send(other, bob.username, fakeCiphertext('once'), 'retry-me')).status).to.equal(201)
  })

  it('rejects bad sends with the documented problem and stores nothing', async () => {
    const before = await countMessages(db)
    const post = (body: string | undefined, headers: Record<string, string> = alice.auth, contentType = 'application/json') =>
      http('POST', `${a.url}/v1/messages`, {body, headers: {...headers, 'content-type': contentType}})
    const valid = {to: {user: bob.username}, kind: 'text', ciphertext: fakeCiphertext(1)}
    const cases: [string, Promise<{status: number; body: any}>, number, string][] = [
      ['malformed JSON', post('{"to": '), 400, 'FC_MALFORMED_JSON'],
      ['missing fields', post(JSON.stringify({to: {user: bob.username}})), 400, 'FC_VALIDATION'],
      ['plaintext instead of ciphertext', post(JSON.stringify({...valid, ciphertext: 'hello bob'})), 400, 'FC_VALIDATION'],
      ['unknown kind', post(JSON.stringify({...valid, kind: 'video'})), 400, 'FC_VALIDATION'],
      ['bad recipient name', post(JSON.stringify({...valid, to: {user: 'no such/user'}})), 400, 'FC_VALIDATION'],
      ['bad idempotency key', post(JSON.stringify(valid), {...alice.auth, 'idempotency-key': 'has space'}), 400, 'FC_VALIDATION'],
      ['oversize text', post(JSON.stringify({...valid, ciphertext: fakeCiphertext('x'.repeat(70_000))})), 413, 'FC_PAYLOAD_TOO_LARGE'],
      ['oversize body', post(JSON.stringify({...valid, ciphertext: fakeCiphertext('x'.repeat(300_000))})), 413, 'FC_PAYLOAD_TOO_LARGE'],
      ['wrong media type', post('to=bob', alice.auth, 'application/x-www-form-urlencoded'), 415, 'FC_UNSUPPORTED_MEDIA_TYPE'],
      ['unknown recipient', post(JSON.stringify({...valid, to: {user: uniqueName('ghost')}})), 404, 'FC_USER_NOT_FOUND'],
      ['no token', post(JSON.stringify(valid), {}), 401, 'FC_UNAUTHORIZED'],
      ['bad token', post(JSON.stringify(valid), {authorization: 'Bearer not-a-token'}), 401, 'FC_UNAUTHORIZED'],
    ]
    for (const [what, answer, status, code] of cases) {
      const {status: got, body} = await answer
      expect(got, `${what}: ${JSON.stringify(body)}`).to.equal(status)
      expect(body.code, what).to.equal(code)
    }
    await http('DELETE', `${a.url}/v1/sessions/current`, {headers: alice.auth})
    const revoked = await post(JSON.stringify(valid))
    expect(revoked.status).to.equal(401)
    expect(await countMessages(db)).to.equal(before)
  })

  it('validates the poll query and refuses other users streams', async () => {
    for (const query of ['since=-1', 'since=abc', 'timeout=60001', 'timeout=-5', 'limit=0', 'limit=100000', `since=${'9'.repeat(40)}`]) {
      const answer = await http('GET', `${b.url}/v1/events?${query}`, {headers: bob.auth})
      expect(answer.status, query).to.equal(400)
    }
    expect((await http('GET', `${b.url}/v1/events?since=0&timeout=0`)).status).to.equal(401)
  })

  it('answers 409 to a cursor ahead of the stream and 410 to one older than retention', async () => {
    await send(alice, bob.username, fakeCiphertext(1))
    await send(alice, bob.username, fakeCiphertext(2))
    const ahead = await poll(bob, 5)
    expect(ahead.status).to.equal(409)
    expect(ahead.body).to.include({code: 'FC_CURSOR_AHEAD', last: 2})

    const [{id}] = await db.query('SELECT id FROM users WHERE username = $1', [bob.username])
    await db.query(`UPDATE events SET created_at = now() - interval '40 days' WHERE recipient_id = $1 AND seq = 1`, [id])
    const {EventStreamRepository} = await import('../../storage/repositories/event-stream.repository.js')
    expect(await new EventStreamRepository(db).prune(30 * 24 * 3_600_000)).to.be.at.least(1)
    const gone = await poll(bob, 0)
    expect(gone.status).to.equal(410)
    expect(gone.body).to.include({code: 'FC_CURSOR_EXPIRED', oldest: 1})
    const rest = await poll(bob, 1)
    expect(rest.body.events.map((e: {seq: number}) => e.seq)).to.deep.equal([2])
  })

  it('pages through history newest first, the same for both participants', async () => {
    const ids: string[] = []
    for (let i = 0; i < 5; i++) ids.push((await send(i % 2 ? bob : alice, i % 2 ? alice.username : bob.username, fakeCiphertext(i))).body.id)
    const first = await http('GET', `${a.url}/v1/conversations/${bob.username}?limit=3`, {headers: alice.auth})
    expect(first.status).to.equal(200)
    expect(first.body.messages.map((m: {id: string}) => m.id)).to.deep.equal(ids.slice(2).reverse())
    expect(first.body.messages[0]).to.include({from: alice.username, kind: 'text'})
    expect(first.body.messages[0].to).to.deep.equal({user: bob.username})
    const second = await http('GET', `${b.url}/v1/conversations/${alice.username}?limit=3&before=${first.body.next}`, {headers: bob.auth})
    expect(second.body.messages.map((m: {id: string}) => m.id)).to.deep.equal(ids.slice(0, 2).reverse())
    expect(second.body.next).to.equal(null)
    // A third user sees nothing of it.
    const carol = await registerAndLogin(a.url, uniqueName('carol'), 'carol')
    const theirs = await http('GET', `${a.url}/v1/conversations/${bob.username}`, {headers: carol.auth})
    expect(theirs.body.messages).to.deep.equal([])
    const foreign = await http('GET', `${a.url}/v1/conversations/${bob.username}?before=${ids[0]}`, {headers: carol.auth})
    expect(foreign.status).to.equal(404)
  })

  it('answers open polls at once when the server drains', async () => {
    const c = await startTestServer()
    // Two clients of bob's (a client's second poll would replace its first).
    const polls = ['laptop', 'phone'].map((client) =>
      http('GET', `${c.url}/v1/events?since=0&timeout=30000`, {headers: {...bob.auth, 'x-fastchat-client': client}}),
    )
    await waitForListeners(c.url, 2)
    const started = Date.now()
    const closed = c.close()
    for (const answer of await Promise.all(polls)) {
      expect(answer.status).to.equal(200)
      expect(answer.body).to.deep.equal({events: [], next: 0})
    }
    expect(Date.now() - started, 'polls answered before their timeout').to.be.lessThan(1_000)
    await closed
    expect(Date.now() - started, 'closed without waiting for the grace period').to.be.lessThan(1_500)
  })
})
