import {randomUUID} from 'node:crypto'

import {expect} from 'chai'
import pino from 'pino'

import type {ReceiptNotice} from '../../client/receipts.js'
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
