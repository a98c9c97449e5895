import {randomUUID} from 'node:crypto'

import {expect} from 'chai'
import type {DataSource} from 'typeorm'

import {createDataSource} from '../../storage/data-source.js'
import {deliveredReceipts} from '../../server/delivery/acks.js'
import {BlockRepository} from '../../storage/repositories/block.repository.js'
import {type DirectBatchOptions, MessageRepository, type NewDirectMessage, type StoredMessage} from '../../storage/repositories/message.repository.js'
import {ReceiptRepository} from '../../storage/repositories/receipt.repository.js'
import {UserRepository} from '../../storage/repositories/user.repository.js'
import {fakeCiphertext, registerAndLogin, send, uniqueName} from '../helpers/api.js'
import {CLUSTER_AUTH, startTestServer} from '../helpers/cluster.js'
import {http} from '../helpers/http.js'

/*
 * Issue 14, item 2: 1:1 sends that arrive while a commit is in flight are
 * committed together in the next one (MessageRepository.storeDirect). Checked
 * against the real database through the repository, where the statements can
 * be counted exactly: sends made in one turn of the event loop queue behind
 * the first one(s), which start at once.
 */
describe('batched commits of 1:1 sends', function () {
  this.timeout(60_000)
  let db: DataSource

  before(async () => {
    db = await createDataSource({url: process.env.DATABASE_URL!}).initialize()
  })
  after(async () => {
    await db.destroy()
  })

  const makeUsers = async (n: number): Promise<string[]> => {
    const users = new UserRepository(db)
    return Promise.all(
      Array.from({length: n}, async () => {
        const username = uniqueName('b')
        return (await users.create({username, usernameKey: username, passwordHash: 'x', publicKey: 'x', fingerprint: randomUUID()}))!
      }),
    )
  }
  const nameOf = async (userId: string) => ((await db.query('SELECT username FROM users WHERE id = $1', [userId])) as {username: string}[])[0]!.username
  const conversation = (a: string, b: string) => (BigInt(a) < BigInt(b) ? `u:${a}:${b}` : `u:${b}:${a}`)
  let counter = 0
  const message = (senderId: string, recipientId: string, extra: Partial<NewDirectMessage> = {}): NewDirectMessage => ({
    senderId,
    recipientId,
    conversation: conversation(senderId, recipientId),
    kind: 'text',
    ciphertext: fakeCiphertext(`batch ${counter++}`),
    blobId: null,
    idempotencyKey: null,
    ...extra,
  })
  /** A repository of its own, so that its statements are the test's alone; `sizes` lists each statement's number of sends. */
  const repository = (options: DirectBatchOptions = {}) => {
    const sizes: number[] = []
    return {repo: new MessageRepository(db, {...options, onBatch: (n) => sizes.push(n)}), sizes}
  }
  /** A recipient's stream, in seq order, with each event's message and whether its sent_at is later than the previous one's. */
  const streamOf = async (recipientId: string) =>
    (await db.query(
      `SELECT e.seq::int AS seq, e.message_id AS id, coalesce(m.sent_at > lag(m.sent_at) OVER (ORDER BY e.seq), true) AS later
         FROM events e JOIN messages m ON m.id = e.message_id WHERE e.recipient_id = $1 ORDER BY e.seq`,
      [recipientId],
    )) as {seq: number; id: string; later: boolean}[]
  const countWithKey = async (senderId: string, key: string) =>
    (await db.query('SELECT count(*)::int AS n FROM messages WHERE sender_id = $1 AND idempotency_key = $2', [senderId, key]))[0].n as number

  /** Each recipient's stream holds exactly `expected` (ids in arrival order), at seqs 1, 2, 3, … with sent_at strictly increasing. */
  const expectStreams = async (expected: Map<string, string[]>, results?: Map<string, StoredMessage>) => {
    for (const [recipientId, ids] of expected) {
      const stream = await streamOf(recipientId)
      expect(stream.map((event) => event.seq), 'gap-free seqs').to.deep.equal(ids.map((_, k) => k + 1))
      expect(stream.map((event) => event.id), 'in arrival order').to.deep.equal(ids)
      // History orders by (sent_at, id): it must agree with the stream.
      expect(stream.every((event) => event.later), 'sent_at strictly increasing along the stream').to.equal(true)
      for (const event of stream) {
        const stored = results?.get(event.id)
        if (stored) expect(stored.appended).to.deep.equal([{recipientId, seq: BigInt(event.seq)}])
      }
    }
  }

  it('commits concurrent sends in fewer statements than sends: each stored once, gap-free and in arrival order per recipient', async () => {
    const senders = await makeUsers(8)
    const recipients = await makeUsers(4)
    const {repo, sizes} = repository({inFlight: 1})
    const sends = Array.from({length: 400}, (_, k) => message(senders[k % senders.length]!, recipients[(k * 7) % recipients.length]!))
    const results = await Promise.all(sends.map((m) => repo.storeDirect(m)))

    // The first starts alone at once; the rest queued behind it, then go 256 at most per statement.
    expect(sizes).to.deep.equal([1, 256, 143])
    expect(repo.batchStats()).to.deep.equal({statements: 3, sends: 400, split: 0})
    const ids = results.map((stored) => stored!.id)
    expect(new Set(ids).size).to.equal(400)
    const stored = (await db.query('SELECT count(*)::int AS n FROM messages WHERE id = ANY($1::uuid[])', [ids]))[0].n
    expect(stored).to.equal(400)
    const expected = new Map<string, string[]>(recipients.map((r) => [r, []]))
    sends.forEach((m, k) => expected.get(m.recipientId)!.push(ids[k]!))
    const byId = new Map(results.map((r) => [r!.id, r!]))
    await expectStreams(expected, byId)
    for (const result of results) expect(result).to.include({duplicate: false, sameContent: true})
  })

  it('runs two statements at once by default, and still commits each stream gap-free and each message once', async () => {
    const senders = await makeUsers(10)
    const recipients = await makeUsers(3)
    const {repo, sizes} = repository()
    const sends = Array.from({length: 300}, (_, k) => message(senders[k % senders.length]!, recipients[k % recipients.length]!))
    const results = await Promise.all(sends.map((m) => repo.storeDirect(m)))
    expect(sizes.slice(0, 2)).to.deep.equal([1, 1])
    expect(sizes.length).to.be.lessThan(10)
    expect(sizes.reduce((a, b) => a + b, 0)).to.equal(300)
    for (const recipientId of recipients) {
      const stream = await streamOf(recipientId)
      expect(stream.map((event) => event.seq)).to.deep.equal(Array.from({length: 100}, (_, k) => k + 1))
      const mine = results.filter((r) => r!.deliveredTo[0] === recipientId)
      expect(new Set(stream.map((event) => event.id))).to.deep.equal(new Set(mine.map((r) => r!.id)))
      for (const r of mine) expect(r!.appended).to.have.length(1)
    }
  })

  it('bounds a statement in bytes, and a send over the bound still goes, alone', async () => {
    const [sender, recipient] = await makeUsers(2)
    const {repo, sizes} = repository({inFlight: 1, maxBytes: 2_500})
    const sends = Array.from({length: 8}, (_, k) => message(sender!, recipient!, {ciphertext: fakeCiphertext(String(k).repeat(k === 5 ? 4_000 : 1_000))}))
    const results = await Promise.all(sends.map((m) => repo.storeDirect(m)))
    // 1 alone at once; then 1+2, 3+4; 5 is over the bound by itself; 6+7.
    expect(sizes).to.deep.equal([1, 2, 2, 1, 2])
    await expectStreams(new Map([[recipient!, results.map((r) => r!.id)]]))
  })

  it('starts a lone send on an idle repository at once, in a statement of its own', async () => {
    const [sender, recipient] = await makeUsers(2)
    const {repo, sizes} = repository()
    await Promise.all([1, 2, 3, 4, 5].map(() => repo.storeDirect(message(sender!, recipient!))))
    const before = repo.batchStats().statements
    const pending = repo.storeDirect(message(sender!, recipient!))
    // Started before this line runs: no timer, no later turn of the event loop.
    expect(repo.batchStats().statements).to.equal(before + 1)
    const stored = await pending
    expect(sizes[sizes.length - 1]).to.equal(1)
    expect(repo.batchStats().statements).to.equal(before + 1)
    expect(stored!.appended).to.deep.equal([{recipientId: recipient!, seq: 6n}])
  })

  it('defers a reused idempotency key to the next statement, which answers with the first send', async () => {
    const [alice, bob, carol] = await makeUsers(3)
    const {repo, sizes} = repository({inFlight: 1})
    const first = message(alice!, bob!, {idempotencyKey: 'k1'})
    const sends = [
      message(carol!, bob!),
      first,
      message(carol!, bob!),
      {...first}, // a retry of the same send, in the same batch
      message(carol!, bob!),
      message(alice!, bob!, {idempotencyKey: 'k2'}),
      message(alice!, bob!, {idempotencyKey: 'k2', ciphertext: fakeCiphertext('other')}), // the key reused for another message
    ]
    const results = await Promise.all(sends.map((m) => repo.storeDirect(m)))
    expect(sizes).to.deep.equal([1, 4, 2])
    expect(results[3]).to.include({id: results[1]!.id, duplicate: true, sameContent: true})
    expect(results[3]!.appended).to.deep.equal([])
    expect(results[6]).to.include({id: results[5]!.id, duplicate: true, sameContent: false})
    expect(await countWithKey(alice!, 'k1')).to.equal(1)
    expect(await countWithKey(alice!, 'k2')).to.equal(1)
    await expectStreams(new Map([[bob!, [0, 1, 2, 4, 5].map((k) => results[k]!.id)]]))
    // A retry after the commit also gets the first answer, and stores nothing.
    const retry = await repo.storeDirect({...first})
    expect(retry).to.include({id: results[1]!.id, duplicate: true, sameContent: true})
    expect((await streamOf(bob!)).length).to.equal(5)
  })

  it('refuses a blocked send inside a batch, and only that one', async () => {
    const [spammer, friend, bob, carol] = await makeUsers(4)
    await new BlockRepository(db).add(bob!, spammer!)
    const {repo, sizes} = repository({inFlight: 1})
    const sends = [
      message(friend!, carol!),
      message(friend!, bob!),
      message(spammer!, bob!, {idempotencyKey: 'spam'}),
      message(spammer!, carol!),
      message(friend!, bob!),
    ]
    const results = await Promise.all(sends.map((m) => repo.storeDirect(m)))
    expect(sizes).to.deep.equal([1, 4])
    expect(results[2]).to.equal(undefined)
    expect(await countWithKey(spammer!, 'spam')).to.equal(0)
    await expectStreams(
      new Map([
        [bob!, [results[1]!.id, results[4]!.id]],
        [carol!, [results[0]!.id, results[3]!.id]],
      ]),
    )
  })

  it('retries the sends of a failed statement one by one: a bad row fails only its own send', async () => {
    const [alice, bob, carol] = await makeUsers(3)
    const {repo, sizes} = repository({inFlight: 1})
    const sends = [
      message(alice!, bob!),
      message(alice!, bob!),
      message(carol!, bob!),
      message(alice!, bob!, {blobId: randomUUID()}), // no such blob: a foreign-key violation fails the statement
      message(carol!, bob!),
      message(alice!, carol!),
    ]
    const settled = await Promise.allSettled(sends.map((m) => repo.storeDirect(m)))
    expect(settled.map((s) => s.status)).to.deep.equal(['fulfilled', 'fulfilled', 'fulfilled', 'rejected', 'fulfilled', 'fulfilled'])
    expect(((settled[3] as PromiseRejectedResult).reason as {code?: string}).code).to.equal('23503')
    // The batch of five failed as a whole, then each of its sends went alone.
    expect(sizes).to.deep.equal([1, 5, 1, 1, 1, 1, 1])
    expect(repo.batchStats().split).to.equal(1)
    const id = (k: number) => (settled[k] as PromiseFulfilledResult<StoredMessage>).value.id
    await expectStreams(
      new Map([
        [bob!, [id(0), id(1), id(2), id(4)]],
        [carol!, [id(5)]],
      ]),
    )
  })

  it('takes other events (read receipts) along in the sends\' statements: one stream order, seqs gap-free, a block drops only its event, an unknown recipient gets nothing', async () => {
    const [alice, bob, carol, mallory] = await makeUsers(4)
    await new BlockRepository(db).add(carol!, mallory!)
    const {repo, sizes} = repository({inFlight: 1})
    const receipt = (to: string, from: string, k: number) => ({recipientId: to, type: 'receipt.read', payload: {from: `u${from}`, ciphertext: `c${k}`}, unlessBlockedBy: from})
    const first = repo.storeDirect(message(alice!, bob!)) // alone, at once: the rest queue behind it
    const second = repo.storeDirect(message(carol!, bob!))
    const bobsReceipts = repo.appendEvents([receipt(alice!, bob!, 1), receipt(carol!, bob!, 2)])
    const third = repo.storeDirect(message(bob!, alice!))
    const blocked = repo.appendEvents([receipt(carol!, mallory!, 3), receipt(alice!, mallory!, 4)])
    const [m1, m2, appended, m3, partly] = await Promise.all([first, second, bobsReceipts, third, blocked])
    // Two statements: the lone first send, then two sends with four events riding along (no statement of their own).
    expect(sizes).to.deep.equal([1, 2])
    expect(repo.batchStats().statements).to.equal(2)
    expect(appended.map((event) => [event.recipientId, event.type, event.payload])).to.deep.equal([
      [alice!, 'receipt.read', {from: `u${bob}`, ciphertext: 'c1'}],
      [carol!, 'receipt.read', {from: `u${bob}`, ciphertext: 'c2'}],
    ])
    // Carol blocks mallory: that receipt is dropped without a word, the other is appended.
    expect(partly.map((event) => event.recipientId)).to.deep.equal([alice!])
    const streams = async (userId: string) =>
      (await db.query('SELECT seq::int AS seq, type, message_id AS id, payload FROM events WHERE recipient_id = $1 ORDER BY seq', [userId])) as {
        seq: number
        type: string
        id: string | null
        payload: {ciphertext?: string} | null
      }[]
    const alices = await streams(alice!)
    // A stream's messages come first in a statement, then the events riding along, each at the seq it was told.
    expect(alices.map((event) => [event.seq, event.type, event.id ?? event.payload!.ciphertext])).to.deep.equal([
      [1, 'message', m3!.id],
      [2, 'receipt.read', 'c1'],
      [3, 'receipt.read', 'c4'],
    ])
    expect([...appended, ...partly].filter((event) => event.recipientId === alice).map((event) => Number(event.seq))).to.deep.equal([2, 3])
    const carols = await streams(carol!)
    expect(carols.map((event) => [event.seq, event.type])).to.deep.equal([[1, 'receipt.read']])
    expect((await streams(bob!)).map((event) => event.id)).to.deep.equal([m1!.id, m2!.id])

    // An event for a user without a stream is not appended (no inbox row to number it), and the rest of its statement is.
    const {repo: again, sizes: againSizes} = repository({inFlight: 1})
    const lone = again.storeDirect(message(alice!, bob!))
    const settled = await Promise.allSettled([
      lone,
      again.storeDirect(message(carol!, bob!)),
      again.appendEvents([{recipientId: '999999999', type: 'receipt.read', payload: {from: 'x', ciphertext: 'x'}}]),
      again.appendEvents([receipt(bob!, alice!, 5)]),
    ])
    expect(settled.map((s) => s.status)).to.deep.equal(['fulfilled', 'fulfilled', 'fulfilled', 'fulfilled'])
    expect((settled[2] as PromiseFulfilledResult<unknown[]>).value).to.deep.equal([])
    expect(againSizes).to.deep.equal([1, 1])
    expect((await streams(bob!)).map((event) => event.type)).to.deep.equal(['message', 'message', 'message', 'message', 'receipt.read'])
  })

  it('delivered receipts ride along too; a failure between their append and the raise of the acknowledgement repeats them, never loses them', async () => {
    const [alice, bob] = await makeUsers(2)
    const {repo} = repository()
    const sent = [await repo.storeDirect(message(alice!, bob!)), await repo.storeDirect(message(alice!, bob!))]
    // The raise fails once, after the append: as a crash of the server between the two would.
    let failRaise = true
    const delivered: string[] = []
    const deliveredAtRaise: number[] = []
    const flaky = new Proxy(db, {
      get(target, property, receiver) {
        if (property !== 'query') return Reflect.get(target, property, receiver)
        return (sql: string, parameters?: unknown[]) => {
          if (sql.startsWith('INSERT INTO acks')) deliveredAtRaise.push(delivered.length)
          if (failRaise && sql.startsWith('INSERT INTO acks')) {
            failRaise = false
            return Promise.reject(new Error('connection lost'))
          }
          return target.query(sql, parameters)
        }
      },
    })
    // As HomeAppender: appended with the sends, then handed to delivery (recorded here).
    const publisher = {
      publish: async (events: Parameters<MessageRepository['appendEvents']>[0]) => {
        const appended = await repo.appendEvents(events)
        delivered.push(...appended.map((event) => event.seq))
        return appended
      },
    }
    const receipts = new ReceiptRepository(flaky, publisher)
    const acks = new Map([[bob!, 2n]])
    const before = repo.batchStats().statements
    const failed = await receipts.recordAcks(acks, deliveredReceipts).then(
      () => 'no error',
      (error: Error) => error.message,
    )
    expect(failed).to.equal('connection lost')
    expect(repo.batchStats().statements, 'appended in a send statement').to.equal(before + 1)
    const again = await receipts.recordAcks(acks, deliveredReceipts)
    expect(again.map((event) => event.payload)).to.deep.equal([{receipts: [{by: (await nameOf(bob!)), messages: sent.map((m) => m!.id)}]}])
    expect(await receipts.recordAcks(acks, deliveredReceipts), 'raised now: nothing new').to.deep.equal([])
    // Each time handed to delivery before the raise: held back until after it, later commits to alice's stream would reach her first.
    expect(deliveredAtRaise).to.deep.equal([1, 2, 2])
    const alices = (await db.query(`SELECT type, payload FROM events WHERE recipient_id = $1 ORDER BY seq`, [alice])) as {type: string; payload: unknown}[]
    expect(alices.map((event) => event.type)).to.deep.equal(['receipt.delivered', 'receipt.delivered'])
    expect(alices[0]!.payload).to.deep.equal(alices[1]!.payload)
  })

  it('fails the queued sends at once when the database cannot be reached, instead of one batch per connection timeout', async () => {
    // A pool whose statements wait until the test ends them: the first two sends run, the rest queue.
    const statements: {resolve: (result: unknown) => void; reject: (error: unknown) => void}[] = []
    const pool = {query: () => new Promise((resolve, reject) => statements.push({resolve, reject}))}
    const repo = new MessageRepository({driver: {master: pool}} as unknown as DataSource)
    const [alice, bob] = ['1', '2']
    const settled = Array.from({length: 5}, () => repo.storeDirect(message(alice!, bob!)).then((value) => ({value}), (error: Error) => ({error})))
    expect(statements).to.have.length(2)
    const gone = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), {code: 'ECONNREFUSED'})
    statements[0]!.reject(gone)
    const results = await Promise.all(settled.filter((_, k) => k !== 1))
    for (const result of results) expect(result).to.deep.equal({error: gone})
    expect(repo.batchStats().statements, 'the queued sends ran no statement').to.equal(2)
    statements[1]!.reject(gone)
    expect(await settled[1]).to.deep.equal({error: gone})
  })

  it('batches the sends a chat server takes at once, and says so in /metrics', async () => {
    const server = await startTestServer()
    try {
      const users = await Promise.all(Array.from({length: 10}, (_, k) => registerAndLogin(server.url, uniqueName(`m${k}`), 'alice')))
      const sends = 200
      const answers = await Promise.all(
        Array.from({length: sends}, (_, k) => send(users[k % users.length]!, users[(k + 1) % users.length]!.username, fakeCiphertext(`http ${k}`))),
      )
      expect(answers.map((a) => a.status)).to.deep.equal(answers.map(() => 201))
      const metrics = (await http('GET', `${server.url}/metrics`, {headers: CLUSTER_AUTH})).body as string
      const value = (name: string) => Number(new RegExp(`^${name} (\\d+)$`, 'm').exec(metrics)?.[1])
      expect(value('fastchat_server_send_batch_sends_sum')).to.equal(sends)
      expect(value('fastchat_server_send_batch_sends_count')).to.be.within(1, sends - 1)
    } finally {
      await server.close()
    }
  })
})
