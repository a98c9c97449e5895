import {randomUUID} from 'node:crypto'
import {mock} from 'node:test'

import {expect} from 'chai'
import pino from 'pino'

import {type ReceiptNotice, Receipts} from '../../client/receipts.js'
import type {OpenedMessage} from '../../client/receive.js'
import {formatReceipt, statusMark} from '../../commands/_lib/format.js'
import {AckRecorder, type AckStore, deliveredReceipts, RECEIPT_IDS_PER_EVENT} from '../../server/delivery/acks.js'
import type {AckedMessage} from '../../storage/repositories/receipt.repository.js'

const acked = (senderId: string, recipient: string, n: number): AckedMessage[] =>
  Array.from({length: n}, () => ({recipientId: `r-${recipient}`, recipient, senderId, messageId: randomUUID(), direct: true}))

describe('receipts', () => {
  it('makes one receipt.delivered event per sender, naming each reader, split past the cap', () => {
    const events = deliveredReceipts([...acked('1', 'bob', 3), ...acked('1', 'carol', 1), ...acked('2', 'bob', RECEIPT_IDS_PER_EVENT + 1)])
    const forOne = events.filter((event) => event.recipientId === '1')
    expect(forOne).to.have.length(1)
    expect((forOne[0]!.payload.receipts as {by: string; messages: string[]}[]).map((r) => [r.by, r.messages.length])).to.deep.equal([
      ['bob', 3],
      ['carol', 1],
    ])
    const forTwo = events.filter((event) => event.recipientId === '2')
    expect(forTwo.map((event) => (event.payload.receipts as {messages: string[]}[]).flatMap((r) => r.messages).length)).to.deep.equal([RECEIPT_IDS_PER_EVENT, 1])
    expect(events.every((event) => event.type === 'receipt.delivered')).to.equal(true)
  })

  it('remembers only the highest acknowledgement per user, writes nothing already written, and keeps a failed flush for the next', async () => {
    const written: Map<string, bigint>[] = []
    let fail = true
    const store: AckStore = {
      recordAcks: async (acks) => {
        if (fail) throw new Error('database down')
        written.push(new Map(acks))
        return []
      },
    }
    const recorder = new AckRecorder(store, pino({level: 'silent'}), 60_000)
    recorder.acked('7', 5n)
    recorder.acked('7', 3n)
    recorder.acked('8', 0n)
    await recorder.flush()
    expect(recorder.stats.failures).to.equal(1)
    fail = false
    recorder.acked('7', 4n)
    await recorder.flush()
    expect(written).to.deep.equal([new Map([['7', 5n]])])
    recorder.acked('7', 5n)
    await recorder.flush()
    expect(written).to.have.length(1)
    await recorder.stop()
  })

  const shown = (id: string) => [{id} as OpenedMessage]
  // The delay's timer is faked; setImmediate (not faked) lets the promises settle.
  const after = async (ms: number) => {
    mock.timers.tick(ms)
    for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve))
  }

  it("a following client sends one read receipts' request at a time: what is shown while one is on its way goes in the next", async () => {
    const receipts = new Receipts(undefined as never, undefined as never, () => undefined)
    const requests: string[][] = []
    let answer!: () => void
    // The request itself, answered when the test says (a server answers once the receipts are committed).
    receipts.acknowledge = (messages: OpenedMessage[]) => {
      requests.push(messages.map((message) => message.id))
      return new Promise<void>((resolve) => (answer = resolve))
    }
    mock.timers.enable({apis: ['setTimeout', 'Date'], now: 1_000_000})
    try {
      // The first page after a quiet spell: at once.
      receipts.acknowledgeSoon(shown('m1'), 1_000)
      await after(0)
      expect(requests).to.deep.equal([['m1']])
      // Two more pages, the delay since the first over, while the first request waits for its answer.
      receipts.acknowledgeSoon(shown('m2'), 1_000)
      await after(1_000)
      receipts.acknowledgeSoon(shown('m3'), 1_000)
      await after(1_000)
      expect(requests, 'nothing more while one is on its way').to.have.length(1)
      answer()
      await after(0)
      expect(requests).to.deep.equal([['m1'], ['m2', 'm3']])
      answer()
      await receipts.flushQueued()
    } finally {
      mock.timers.reset()
    }
    expect(requests).to.have.length(2)
  })

  it('a following client sends the first read receipts after a quiet spell at once, and those of a busy spell one delay apart', async () => {
    const receipts = new Receipts(undefined as never, undefined as never, () => undefined)
    const sent: {at: number; ids: string[]}[] = []
    receipts.acknowledge = async (messages: OpenedMessage[]) => void sent.push({at: Date.now(), ids: messages.map((message) => message.id)})
    mock.timers.enable({apis: ['setTimeout', 'Date'], now: 1_000_000})
    try {
      receipts.acknowledgeSoon(shown('m1'), 2_000)
      await after(0)
      // A page every 500 ms: each waits for two seconds after the request before, and they go together.
      for (const id of ['m2', 'm3', 'm4', 'm5']) {
        await after(500)
        receipts.acknowledgeSoon(shown(id), 2_000)
      }
      expect(sent.map((request) => request.ids)).to.deep.equal([['m1'], ['m2', 'm3', 'm4']])
      await after(2_000)
      expect(sent.map((request) => request.ids)).to.deep.equal([['m1'], ['m2', 'm3', 'm4'], ['m5']])
      expect(sent.map((request) => request.at - 1_000_000)).to.deep.equal([0, 2_000, 4_000])
      // Quiet for longer than the delay: the next page goes at once again.
      await after(5_000)
      receipts.acknowledgeSoon(shown('m6'), 2_000)
      await after(0)
      expect(sent.at(-1)).to.deep.equal({at: 1_000_000 + 9_000, ids: ['m6']})
    } finally {
      mock.timers.reset()
    }
  })

  it('prints receipts and history marks on one sanitized line', () => {
    const receipt: ReceiptNotice = {type: 'receipt', id: 'receipt:1:bob', status: 'read', by: 'bob\u001b[2J\nalice', messages: ['a', 'b'], verification: {status: 'invalid', reason: 'forged\r\n[x] alice: hi'}}
    const line = formatReceipt(receipt)
    expect(line).not.to.match(/[\u0000-\u001f\u007f]/)
    expect(line).to.match(/^Receipt: .* read 2 of your messages \(✘ NOT verified: /)
    expect(statusMark({status: 'sent'})).to.equal('✓ sent')
    expect(statusMark({status: 'delivered'})).to.equal('✓✓ delivered')
    expect(statusMark({status: 'read', receipts: {deliveredTo: ['bob'], readBy: ['bob', 'carol'], members: 3}})).to.equal('✓✓ read by 2 of 3')
    expect(statusMark({status: 'delivered', receipts: {deliveredTo: ['bob'], readBy: [], members: 3}})).to.equal('✓✓ delivered to 1 of 3')
  })
})
