import {Transform, type TransformCallback} from 'node:stream'

/**
 * PostgreSQL's binary COPY format (https://www.postgresql.org/docs/current/sql-copy.html,
 * "Binary Format"), just what blob streaming needs: bytes travel as they are,
 * where the ordinary protocol would hex-encode every bytea and node-pg would
 * copy it through growing buffers (about four times the data in garbage).
 */
const SIGNATURE = Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1')
export const COPY_HEADER = Buffer.concat([SIGNATURE, Buffer.alloc(8)]) // flags 0, no header extension
export const COPY_TRAILER = Buffer.from([0xff, 0xff])

/** The framing before one (blob_id uuid, idx int4, data bytea) row whose data is `length` bytes. */
export function chunkRowHeader(blobId: string, idx: number, length: number): Buffer {
  const header = Buffer.alloc(2 + 4 + 16 + 4 + 4 + 4)
  let at = header.writeInt16BE(3, 0)
  at = header.writeInt32BE(16, at)
  at += Buffer.from(blobId.replaceAll('-', ''), 'hex').copy(header, at)
  at = header.writeInt32BE(4, at)
  at = header.writeInt32BE(idx, at)
  header.writeInt32BE(length, at)
  return header
}

/**
 * Turns the binary COPY output of a one-column bytea query back into the
 * bytes of that column, row after row, passing slices of what arrives
 * through without copying them.
 */
export class SingleByteaColumn extends Transform {
  private headerLeft = COPY_HEADER.length
  private extensionLeft: number | undefined
  /** Bytes of the current field still to pass through. */
  private dataLeft = 0
  /** A partial frame (field count + length) that straddles two pieces. */
  private pending = Buffer.alloc(0)
  private done = false
  /** Rows passed through so far. */
  rows = 0

  override _transform(piece: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    try {
      this.consume(piece)
      callback()
    } catch (error) {
      callback(error as Error)
    }
  }

  override _flush(callback: TransformCallback): void {
    callback(this.done ? undefined : new Error('binary COPY stream ended early'))
  }

  private consume(piece: Buffer): void {
    let at = 0
    while (at < piece.length && !this.done) {
      if (this.headerLeft > 0) {
        const take = Math.min(this.headerLeft, piece.length - at)
        this.pending = Buffer.concat([this.pending, piece.subarray(at, at + take)])
        this.headerLeft -= take
        at += take
        if (this.headerLeft === 0) {
          this.extensionLeft = this.pending.readInt32BE(COPY_HEADER.length - 4)
          this.pending = Buffer.alloc(0)
        }
        continue
      }
      if (this.extensionLeft) {
        const skip = Math.min(this.extensionLeft, piece.length - at)
        this.extensionLeft -= skip
        at += skip
        continue
      }
      if (this.dataLeft > 0) {
        const take = Math.min(this.dataLeft, piece.length - at)
        this.push(piece.subarray(at, at + take))
        this.dataLeft -= take
        at += take
        continue
      }
      // A row: int16 field count (-1 ends the stream), then the int32 length of our one field.
      const need = this.pending.length < 2 ? 2 : 6
      const take = Math.min(need - this.pending.length, piece.length - at)
      this.pending = Buffer.concat([this.pending, piece.subarray(at, at + take)])
      at += take
      if (this.pending.length < need) continue
      const fields = this.pending.readInt16BE(0)
      if (fields === -1) {
        this.done = true
      } else if (fields !== 1) {
        throw new Error(`expected one column, got ${fields}`)
      } else if (need === 6) {
        this.dataLeft = this.pending.readInt32BE(2)
        if (this.dataLeft < 0) throw new Error('NULL chunk in a blob')
        this.rows++
      } else {
        continue // the count is in; the length comes next
      }
      this.pending = Buffer.alloc(0)
    }
  }
}
