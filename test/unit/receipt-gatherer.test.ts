import {mock} from 'node:test'

import {expect} from 'chai'

import {RECEIPT_IDS_PER_EVENT} from '../../server/delivery/acks.js'
import {mergeReceiptEvents, ReceiptGatherer} from '../../server/delivery/receipt-gatherer.js'
import type {AppendedEvent, EventToAppend} from '../../storage/repositories/event-stream.repository.js'
import {RecordedAppends} from '../helpers/recorded-appends.js'

/**
 * ReceiptGatherer on its own, with fake timers (node:test's): receipts to a
 * user, delivered and read, from this server and from peers, wait for that
 * user's window and go in one event of each kind; what one flush appends,
 * when it is delivered, and when each caller is answered. Its appends are
 * recorded here; the integration suite (receipts.test.ts) runs it between
 * two chat servers on PostgreSQL.
 */

const WINDOW_MS = 1_000

class Recorder extends RecordedAppends {
  readonly delivered: AppendedEvent[] = []
  readonly local = {appendEvents: (events: EventToAppend[]) => this.append(events)}

  /** Per append, per event: recipient, type, and its items (readers, or reader:ids). */
  get shape() {
    return this.appends.map((events) =>
      events.map((event) => [
        event.recipientId,
        event.type,
        (event.payload.receipts as {from?: string; by?: string; messages?: string[]}[]).map((r) => r.from ?? `${r.by}:${r.messages!.join('+')}`),
      ]),
    )
  }
}

const read = (recipientId: string, from: string): EventToAppend => ({recipientId, type: 'receipt.read', payload: {receipts: [{from, ciphertext: `${from}>${recipientId}`}]}})
const delivered = (recipientId: string, by: string, ...messages: string[]): EventToAppend => ({recipientId, type: 'receipt.delivered', payload: {receipts: [{by, messages}]}})
/** Lets the promises of a flush settle (setImmediate is not faked). */
const settle = () => new Promise((resolve) => setImmediate(resolve))

describe('receipts gathered per recipient on their server (ReceiptGatherer, fake timers)', () => {
  let recorder: Recorder
  let gatherer: ReceiptGatherer

  beforeEach(() => {
    mock.timers.enable({apis: ['setTimeout', 'Date'], now: 1_000_000})
    recorder = new Recorder()
    gatherer = new ReceiptGatherer(recorder.local, (events) => recorder.delivered.push(...events), WINDOW_MS)
  })
  afterEach(() => mock.timers.reset())

  /** Hands events over (as HomeAppender or a peer does) and tracks the answer. */
  const hand = (...events: EventToAppend[]) => {
    const answer = {appended: undefined as AppendedEvent[] | undefined, error: undefined as unknown}
    gatherer.appendEvents(events).then(
      (appended) => (answer.appended = appended),
      (error: unknown) => (answer.error = error),
    )
    return answer
  }

  it("a receipt to someone who got none lately goes at once; those within the window, of both kinds and from any reader, wait for its end and share one event of each kind", async () => {
    const first = hand(read('alice', 'bob'))
    mock.timers.tick(0)
    await settle()
    expect(recorder.shape).to.deep.equal([[['alice', 'receipt.read', ['bob']]]])
    expect(first.appended?.map((event) => event.seq)).to.deep.equal(['1'])
    expect(recorder.delivered.map((event) => event.seq), 'delivered as it commits').to.deep.equal(['1'])

    // From this server's flushes and from peers': two delivered receipts by bob (one message each), read receipts by carol and dave.
    const parts = [hand(delivered('alice', 'bob', 'm1')), hand(read('alice', 'carol'), delivered('alice', 'bob', 'm2')), hand(read('alice', 'dave'), delivered('alice', 'carol', 'm1'))]
    mock.timers.tick(WINDOW_MS - 1)
    await settle()
    expect(recorder.appends).to.have.length(1)
    expect(parts.some((part) => part.appended)).to.equal(false)
    mock.timers.tick(1)
    await settle()
    expect(recorder.shape[1]).to.deep.equal([
      ['alice', 'receipt.delivered', ['bob:m1+m2', 'carol:m1']],
      ['alice', 'receipt.read', ['carol', 'dave']],
    ])
    expect(parts.map((part) => part.appended?.map((event) => event.type))).to.deep.equal([
      ['receipt.delivered'],
      ['receipt.read', 'receipt.delivered'],
      ['receipt.read', 'receipt.delivered'],
    ])
    expect(recorder.delivered.map((event) => event.seq)).to.deep.equal(['1', '2', '3'])
  })

  it('a flush takes everyone due within a quarter of the window; a caller is answered once all its events are committed', async () => {
    hand(read('alice', 'bob'))
    mock.timers.tick(0)
    await settle()
    mock.timers.tick(200)
    hand(read('erin', 'bob'))
    mock.timers.tick(0)
    await settle()
    expect(recorder.appends).to.have.length(2)

    // Alice's window ends at 1,000, erin's at 1,200; gina got nothing yet, so hers goes at once, but this call waits for all three.
    const carol = hand(read('alice', 'carol'), read('erin', 'carol'), read('gina', 'carol'))
    mock.timers.tick(0)
    await settle()
    expect(recorder.shape[2]).to.deep.equal([['gina', 'receipt.read', ['carol']]])
    expect(carol.appended).to.equal(undefined)
    mock.timers.tick(WINDOW_MS - 200)
    await settle()
    expect(recorder.shape[3]).to.deep.equal([
      ['alice', 'receipt.read', ['carol']],
      ['erin', 'receipt.read', ['carol']],
    ])
    expect(carol.appended?.map((event) => event.recipientId)).to.deep.equal(['alice', 'erin', 'gina'])
  })

  it('appends (and delivers) anything but receipts at once', async () => {
    const offer = hand({recipientId: 'alice', type: 'peer.offer', payload: {from: 'bob', ciphertext: 'x'}, unlessBlockedBy: 'id-bob'})
    await settle()
    expect(recorder.appends).to.have.length(1)
    expect(offer.appended?.map((event) => event.type)).to.deep.equal(['peer.offer'])
    expect(recorder.delivered).to.have.length(1)
  })

  it('a failed flush fails every caller it held; the next flush goes on', async () => {
    recorder.failNext = true
    const lost = hand(read('alice', 'bob'))
    mock.timers.tick(0)
    await settle()
    expect((lost.error as Error).message).to.equal('connection lost')
    expect(recorder.delivered).to.have.length(0)
    const again = hand(read('alice', 'bob'))
    mock.timers.tick(WINDOW_MS)
    await settle()
    expect(again.appended).to.have.length(1)
    expect(recorder.shape).to.deep.equal([[['alice', 'receipt.read', ['bob']]]])
  })

  it('a draining server appends what is held at once, and whatever still comes', async () => {
    hand(read('alice', 'bob'))
    mock.timers.tick(0)
    await settle()
    const held = hand(read('alice', 'carol'))
    await gatherer.drain()
    expect(held.appended).to.have.length(1)
    const late = hand(read('alice', 'dave'))
    mock.timers.tick(0)
    await settle()
    expect(late.appended).to.have.length(1)
    expect(recorder.shape.map((append) => append.map(([, , items]) => items))).to.deep.equal([[['bob']], [['carol']], [['dave']]])
  })
})

describe('mergeReceiptEvents', () => {
  it("per recipient one event of each kind, a reader's message ids together, split past RECEIPT_IDS_PER_EVENT ids", () => {
    const ids = (prefix: string, n: number) => Array.from({length: n}, (_, i) => `${prefix}${i}`)
    const merged = mergeReceiptEvents([
      delivered('alice', 'bob', ...ids('a', RECEIPT_IDS_PER_EVENT - 10)),
      read('alice', 'bob'),
      delivered('erin', 'bob', 'e1'),
      delivered('alice', 'carol', ...ids('c', 5)),
      delivered('alice', 'bob', ...ids('b', 20)),
      read('alice', 'carol'),
    ])
    const shape = merged.map((event) => [event.recipientId, event.type, (event.payload.receipts as {by?: string; from?: string; messages?: string[]}[]).map((r) => r.from ?? `${r.by}:${r.messages!.length}`)])
    expect(shape).to.deep.equal([
      ['alice', 'receipt.delivered', [`bob:${RECEIPT_IDS_PER_EVENT}`]],
      ['alice', 'receipt.delivered', ['bob:10', 'carol:5']],
      ['erin', 'receipt.delivered', ['bob:1']],
      ['alice', 'receipt.read', ['bob', 'carol']],
    ])
    const bobs = merged.filter((event) => event.recipientId === 'alice' && event.type === 'receipt.delivered').flatMap((event) => (event.payload.receipts as {by: string; messages: string[]}[]).filter((r) => r.by === 'bob').flatMap((r) => r.messages))
    expect(bobs, "bob's ids in the order they came").to.deep.equal([...ids('a', RECEIPT_IDS_PER_EVENT - 10), ...ids('b', 20)])
  })
})
