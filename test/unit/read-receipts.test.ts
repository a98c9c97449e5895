import {mock} from 'node:test'

import {expect} from 'chai'

import {READ_RECEIPT_EVENT_MAX_BYTES, READ_RECEIPTS_PER_EVENT, ReadReceiptBatcher, readReceiptEvents} from '../../server/services/receipts.js'
import type {AppendedEvent, EventToAppend} from '../../storage/repositories/event-stream.repository.js'

/**
 * ReadReceiptBatcher on its own, with fake timers (node:test's): when read
 * receipts to one user wait and when they go, what one flush appends, and
 * when a request is answered. Its appends are recorded here; the
 * integration suite (receipts.test.ts) runs it against PostgreSQL.
 */

const WINDOW_MS = 1_000

class Recorder {
  readonly appends: EventToAppend[][] = []
  readonly delivered: AppendedEvent[] = []
  readonly blocked = new Set<string>()
  failNext = false
  private seq = 0

  /** Appends and hands to delivery, as HomeAppender does. */
  readonly publisher = {
    publish: async (events: EventToAppend[]): Promise<AppendedEvent[]> => {
      if (this.failNext) {
        this.failNext = false
        throw new Error('connection lost')
      }
      this.appends.push(events)
      const appended = events.map((event) => ({recipientId: event.recipientId, seq: String(++this.seq), type: event.type, payload: event.payload, at: new Date()}))
      this.delivered.push(...appended)
      return appended
    },
  }
  readonly blocks = {blockedPairs: async (pairs: [string, string][]) => new Set(pairs.map(([a, b]) => `${a} ${b}`).filter((key) => this.blocked.has(key)))}

  /** Per append, per event: its recipient and the readers in it. */
  get shape() {
    return this.appends.map((events) => events.map((event) => [event.recipientId, (event.payload.receipts as {from: string}[]).map((r) => r.from)]))
  }
}

const reader = (name: string) => ({userId: `id-${name}`, username: name})
/** Lets the promises of a flush settle (setImmediate is not faked). */
const settle = () => new Promise((resolve) => setImmediate(resolve))

describe('read receipts gathered per recipient (fake timers)', () => {
  let recorder: Recorder
  let batcher: ReadReceiptBatcher

  beforeEach(() => {
    mock.timers.enable({apis: ['setTimeout', 'Date'], now: 1_000_000})
    recorder = new Recorder()
    batcher = new ReadReceiptBatcher(recorder.publisher, recorder.blocks, WINDOW_MS)
  })
  afterEach(() => mock.timers.reset())

  /** Adds a request and tracks whether it was answered. */
  const post = (from: string, ...to: string[]) => {
    const answer = {done: false, error: undefined as unknown}
    batcher.add(reader(from), to.map((recipientId) => ({recipientId, ciphertext: `${from}>${recipientId}`}))).then(
      () => (answer.done = true),
      (error: unknown) => (answer.error = error),
    )
    return answer
  }

  it('a receipt to someone who got none lately goes at once; those within the window wait for its end and share one event', async () => {
    const first = post('bob', 'alice')
    mock.timers.tick(0)
    await settle()
    expect(recorder.shape).to.deep.equal([[['alice', ['bob']]]])
    expect(first.done).to.equal(true)

    const [carol, dave] = [post('carol', 'alice'), post('dave', 'alice')]
    mock.timers.tick(WINDOW_MS - 1)
    await settle()
    expect(recorder.appends).to.have.length(1)
    expect(carol.done || dave.done).to.equal(false)
    mock.timers.tick(1)
    await settle()
    expect(recorder.shape[1]).to.deep.equal([['alice', ['carol', 'dave']]])
    expect(carol.done && dave.done).to.equal(true)
    expect(recorder.delivered.map((event) => event.seq)).to.deep.equal(['1', '2'])
  })

  it('a flush takes everyone due within a quarter of the window; a request is answered once all its receipts are committed', async () => {
    post('bob', 'alice')
    mock.timers.tick(0)
    await settle()
    mock.timers.tick(200)
    post('bob', 'erin')
    mock.timers.tick(0)
    await settle()
    expect(recorder.appends).to.have.length(2)

    // Alice's window ends at 1,000, erin's at 1,200; gina got nothing yet, so hers goes at once, but carol's request waits for all three.
    const carol = post('carol', 'alice', 'erin', 'gina')
    mock.timers.tick(0)
    await settle()
    expect(recorder.shape[2]).to.deep.equal([['gina', ['carol']]])
    expect(carol.done).to.equal(false)
    mock.timers.tick(WINDOW_MS - 200)
    await settle()
    expect(recorder.shape[3]).to.deep.equal([
      ['alice', ['carol']],
      ['erin', ['carol']],
    ])
    expect(carol.done).to.equal(true)
  })

  it('drops the receipts of readers their recipient blocks, and still answers', async () => {
    recorder.blocked.add('alice id-mallory')
    const [mallory, bob] = [post('mallory', 'alice'), post('bob', 'alice')]
    mock.timers.tick(0)
    await settle()
    expect(recorder.shape).to.deep.equal([[['alice', ['bob']]]])
    expect(mallory.done && bob.done).to.equal(true)
    expect(batcher.stats).to.include({receipts: 1, dropped: 1, events: 1})
  })

  it('a failed flush fails the requests it held; the next flush goes on', async () => {
    recorder.failNext = true
    const lost = post('bob', 'alice')
    mock.timers.tick(0)
    await settle()
    expect((lost.error as Error).message).to.equal('connection lost')
    const again = post('bob', 'alice')
    mock.timers.tick(WINDOW_MS)
    await settle()
    expect(again.done).to.equal(true)
    expect(recorder.shape).to.deep.equal([[['alice', ['bob']]]])
  })

  it('a draining server sends what is held at once, and whatever still comes', async () => {
    post('bob', 'alice')
    mock.timers.tick(0)
    await settle()
    const held = post('carol', 'alice')
    await batcher.drain()
    expect(held.done).to.equal(true)
    const late = post('dave', 'alice')
    mock.timers.tick(0)
    await settle()
    expect(late.done).to.equal(true)
    expect(recorder.shape).to.deep.equal([[['alice', ['bob']]], [['alice', ['carol']]], [['alice', ['dave']]]])
  })
})

describe('readReceiptEvents', () => {
  it('one event per recipient, split past READ_RECEIPTS_PER_EVENT receipts or READ_RECEIPT_EVENT_MAX_BYTES', () => {
    const many = Array.from({length: READ_RECEIPTS_PER_EVENT * 2 + 5}, (_, i) => ({recipientId: 'alice', from: `r${i}`, ciphertext: 'x'}))
    const big = 'y'.repeat(Math.floor(READ_RECEIPT_EVENT_MAX_BYTES / 2) - 1)
    const large = [1, 2, 3].map((i) => ({recipientId: 'bob', from: `s${i}`, ciphertext: big}))
    const events = readReceiptEvents([...many, ...large, {recipientId: 'alice', from: 'last', ciphertext: 'z'}])
    const sizes = events.map((event) => [event.recipientId, (event.payload.receipts as unknown[]).length])
    expect(sizes).to.deep.equal([
      ['alice', READ_RECEIPTS_PER_EVENT],
      ['alice', READ_RECEIPTS_PER_EVENT],
      ['alice', 6],
      ['bob', 2],
      ['bob', 1],
    ])
    expect(events.every((event) => event.type === 'receipt.read' && event.unlessBlockedBy === undefined)).to.equal(true)
    expect((events[2]!.payload.receipts as {from: string}[]).at(-1)).to.deep.equal({from: 'last', ciphertext: 'z'})
  })
})
