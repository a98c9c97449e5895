import {Readable} from 'node:stream'
import {buffer} from 'node:stream/consumers'

import {expect} from 'chai'

import {COPY_HEADER, COPY_TRAILER, SingleByteaColumn} from '../../storage/repositories/pg-binary-copy.js'

/** What `COPY (SELECT data ...) TO STDOUT (FORMAT binary)` sends for these rows. */
function copyOutput(rows: Buffer[]): Buffer {
  const parts: Buffer[] = [COPY_HEADER]
  for (const row of rows) {
    const frame = Buffer.alloc(6)
    frame.writeInt16BE(1, 0)
    frame.writeInt32BE(row.length, 2)
    parts.push(frame, row)
  }
  parts.push(COPY_TRAILER)
  return Buffer.concat(parts)
}

describe('binary COPY reader', () => {
  const rows = [Buffer.from('first row'), Buffer.alloc(0), Buffer.from([0xff, 0xff, 0x00, 0x01]), Buffer.alloc(1000, 7)]
  const expected = Buffer.concat(rows)

  it('yields the column bytes whatever the piece boundaries', async () => {
    const whole = copyOutput(rows)
    for (const size of [1, 2, 3, 5, 7, 19, 64, whole.length]) {
      const pieces: Buffer[] = []
      for (let at = 0; at < whole.length; at += size) pieces.push(whole.subarray(at, at + size))
      const out = await buffer(Readable.from(pieces).pipe(new SingleByteaColumn()))
      expect(out.equals(expected), `pieces of ${size}`).to.equal(true)
    }
  })

  it('fails on a truncated stream rather than returning a short file', async () => {
    const whole = copyOutput(rows)
    const reader = Readable.from([whole.subarray(0, whole.length - 10)]).pipe(new SingleByteaColumn())
    const error = await buffer(reader).catch((e: Error) => e)
    expect(error).to.be.instanceOf(Error)
  })
})
