import {mock} from 'node:test'

import {expect} from 'chai'

import {READ_RECEIPT_EVENT_MAX_BYTES, READ_RECEIPT_TICK_MS, READ_RECEIPTS_PER_EVENT, ReadReceiptBatcher, readReceiptEvents} from '../../server/services/receipts.js'
import type {EventToAppend} from '../../storage/repositories/event-stream.repository.js'
import {RecordedAppends} from '../helpers/recorded-appends.js'

/**
 * ReadReceiptBatcher on its own, with fake timers (node:test's): read
 * receipts wait at most a tick on the server they were posted to, then go
 * (one event per recipient) to be gathered on their recipients' servers
 * (test/unit/receipt-gatherer.test.ts); when a request is answered. Its
 * publishes are recorded here; the integration suite (receipts.test.ts) runs
 * it against PostgreSQL.
 */

const WINDOW_MS = 1_000

class Recorder extends RecordedAppends {
  readonly blocked = new Set<string>()
  /** Set: publishes wait for it (a recipient's window on its server). */
  hold: Promise<void> | undefined

  /** Publishes as HomeAppender does, answering once "committed". */
  readonly publisher = {publish: (events: EventToAppend[]) => this.append(events, this.hold)}
  readonly blocks = {blockedPairs: async (pairs: [string, string][]) => new Set(pairs.map(([a, b]) => `${a} ${b}`).filter((key) => this.blocked.has(key)))}

  /** Per publish, per event: its recipient and the readers in it. */
  get shape() {
    return this.appends.map((events) => events.map((event) => [event.recipientId, (event.payload.receipts as {from: string}[]).map((r) => r.from)]))
  }
}

const reader = (name: string) => ({userId: `id-${name}`, username: name})
/** Lets the promises of a flush settle (setImmediate is not faked). */
const settle = () => new Promise((resolve) => setImmediate(resolve))

describe('read receipts on the server they were posted to (fake timers)', () => {
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

  it('the requests of a tick go together, one event per recipient; each is answered once its publish is committed', async () => {
    const [bob, carol] = [post('bob', 'alice', 'erin'), post('carol', 'alice')]
    mock.timers.tick(READ_RECEIPT_TICK_MS - 1)
    await settle()
    expect(recorder.appends).to.have.length(0)
    mock.timers.tick(1)
    await settle()
    expect(recorder.shape).to.deep.equal([
      [
        ['alice', ['bob', 'carol']],
        ['erin', ['bob']],
      ],
    ])
    expect(bob.done && carol.done).to.equal(true)
  })

  it("a flush waiting for its recipients' window does not hold up the next tick's", async () => {
    let open!: () => void
    recorder.hold = new Promise<void>((resolve) => (open = resolve))
    const first = post('bob', 'alice')
    mock.timers.tick(READ_RECEIPT_TICK_MS)
    await settle()
    const second = post('carol', 'alice')
    mock.timers.tick(READ_RECEIPT_TICK_MS)
    await settle()
    expect(recorder.shape).to.deep.equal([[['alice', ['bob']]], [['alice', ['carol']]]])
    expect(first.done || second.done).to.equal(false)
    open()
    await settle()
    expect(first.done && second.done).to.equal(true)
  })

  it('drops the receipts of readers their recipient blocks, and still answers', async () => {
    recorder.blocked.add('alice id-mallory')
    const [mallory, bob] = [post('mallory', 'alice'), post('bob', 'alice')]
    mock.timers.tick(READ_RECEIPT_TICK_MS)
    await settle()
    expect(recorder.shape).to.deep.equal([[['alice', ['bob']]]])
    expect(mallory.done && bob.done).to.equal(true)
    expect(batcher.stats).to.include({receipts: 1, dropped: 1, events: 1})
  })

  it('a failed flush fails the requests it held; the next flush goes on', async () => {
    recorder.failNext = true
    const lost = post('bob', 'alice')
    mock.timers.tick(READ_RECEIPT_TICK_MS)
    await settle()
    expect((lost.error as Error).message).to.equal('connection lost')
    const again = post('bob', 'alice')
    mock.timers.tick(READ_RECEIPT_TICK_MS)
    await settle()
    expect(again.done).to.equal(true)
    expect(recorder.shape).to.deep.equal([[['alice', ['bob']]]])
  })

  it('a draining server sends what is held at once, and whatever still comes', async () => {
    const held = post('carol', 'alice')
    await batcher.drain()
    expect(held.done).to.equal(true)
    const late = post('dave', 'alice')
    mock.timers.tick(0)
    await settle()
    expect(late.done).to.equal(true)
    expect(recorder.shape).to.deep.equal([[['alice', ['carol']]], [['alice', ['dave']]]])
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
