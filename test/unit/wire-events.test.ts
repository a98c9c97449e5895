import {expect} from 'chai'

import {wireEventOfRow} from '../../server/delivery/views.js'

/*
 * An appended event's wire JSON is spliced from the payload JSON its appender
 * made (MessageRepository.appendEvents) instead of made again: it must be
 * byte for byte the JSON a read of the stream gives.
 */
describe('wire events of appended events', () => {
  const at = new Date('2026-12-07T09:00:00.123Z')
  const cases: Record<string, unknown>[] = [
    {from: 'alice', ciphertext: '-----BEGIN PGP MESSAGE-----\n\nwV4D\u00e9\u2028"quoted"\\\n-----END PGP MESSAGE-----\n'},
    {},
    {receipts: [{by: 'bob', messages: ['00000000-0000-4000-8000-000000000001']}]},
    {nested: {a: [1, null, true]}, n: 1.5e-7},
    {seq: 99, type: 'forged', at: 'yesterday'}, // made, not spliced: the envelope's members are not repeated
  ]
  for (const payload of cases) {
    it(`gives the same event for ${JSON.stringify(payload).slice(0, 40)}`, () => {
      const row = {seq: '42', type: 'receipt.read', payload, at}
      const made = wireEventOfRow(row)
      const spliced = wireEventOfRow({...row, payloadJson: JSON.stringify(payload)})
      expect(spliced).to.deep.equal(made)
      if (!('seq' in payload)) expect(JSON.parse(spliced.json)).to.include({seq: 42, type: 'receipt.read', at: at.toISOString()})
    })
  }
})
