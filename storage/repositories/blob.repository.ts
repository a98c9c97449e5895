import {randomUUID} from 'node:crypto'

import {finished} from 'node:stream/promises'

import type pg from 'pg'
import {from as copyFrom, to as copyTo, type CopyStreamQuery} from 'pg-copy-streams'
import type {DataSource} from 'typeorm'

import {chunkRowHeader, COPY_HEADER, COPY_TRAILER, SingleByteaColumn} from './pg-binary-copy.js'

/**
 * Smallest `blob_chunks` row written, unless it is the last: a request arrives
 * in pieces of up to 64 KiB, stored as they come; smaller ones are joined.
 */
const BLOB_ROW_MIN_BYTES = 64 * 1024
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

export class BlobTooLargeError extends Error {}

export class BlobRepository {
  constructor(private readonly db: DataSource) {}

  /**
   * Stores `source` as one blob in a single transaction: the blob becomes
   * visible only when every byte is in. A source that fails or grows past
   * `limitBytes` rolls everything back, so an interrupted or oversize upload
   * leaves no row behind. The bytes go in by binary COPY, each piece of the
   * request as one row (small pieces coalesced), so they are never copied or
   * encoded on the way; COPY's flow control is the back-pressure on the client.
   */
  async store(uploaderId: string, source: AsyncIterable<Buffer>, limitBytes: number): Promise<{id: string; size: number}> {
    const id = randomUUID()
    const runner = this.db.createQueryRunner()
    const client = (await runner.connect()) as pg.PoolClient
    await runner.startTransaction()
    let copy: CopyStreamQuery | undefined
    try {
      await runner.query('INSERT INTO blobs (id, uploader_id, size) VALUES ($1, $2, 0)', [id, uploaderId])
      copy = client.query(copyFrom('COPY blob_chunks (blob_id, idx, data) FROM STDIN (FORMAT binary)'))
      const stream = copy
      const copied = finished(stream)
      copied.catch(() => undefined) // awaited below; an early failure must not go unhandled meanwhile
      const write = (bytes: Buffer) => new Promise<void>((resolve, reject) => stream.write(bytes, (error) => (error ? reject(error) : resolve())))
      let idx = 0
      const row = async (data: Buffer) => {
        await write(chunkRowHeader(id, idx++, data.length))
        await write(data)
      }
      await write(COPY_HEADER)
      let size = 0
      let pending: Buffer[] = []
      let pendingBytes = 0
      for await (const piece of source) {
        size += piece.length
        if (size > limitBytes) throw new BlobTooLargeError()
        pending.push(piece)
        pendingBytes += piece.length
        if (pendingBytes >= BLOB_ROW_MIN_BYTES) {
          await row(pending.length === 1 ? pending[0]! : Buffer.concat(pending, pendingBytes))
          pending = []
          pendingBytes = 0
        }
      }
      if (pendingBytes > 0) await row(Buffer.concat(pending, pendingBytes))
      stream.end(COPY_TRAILER)
      await copied
      await runner.query('UPDATE blobs SET size = $2 WHERE id = $1', [id, size])
      await runner.commitTransaction()
      return {id, size}
    } catch (error) {
      // Destroying the COPY makes the server abort it; the rollback then drops the blob row too.
      if (copy && !copy.destroyed) {
        copy.destroy(error as Error)
        await finished(copy).catch(() => undefined)
      }
      await runner.rollbackTransaction().catch(() => undefined)
      throw error
    } finally {
      await runner.release()
    }
  }

  /**
   * The size of a blob the user may read: they uploaded it, or they received
   * a message that references it (directly, or as a member of its group in
   * the epoch it was sent in).
   */
  async readableSize(blobId: string, userId: string): Promise<number | undefined> {
    const [row] = (await this.db.query(
      `SELECT b.size FROM blobs b
        WHERE b.id = $1
          AND (b.uploader_id = $2
               OR EXISTS (SELECT 1 FROM messages m WHERE m.blob_id = b.id AND m.recipient_id = $2)
               OR EXISTS (SELECT 1 FROM messages m
                            JOIN group_epochs ge ON ge.group_id = m.group_id AND ge.epoch = m.epoch
                           WHERE m.blob_id = b.id AND $2::bigint = ANY(ge.member_ids)))`,
      [blobId, userId],
    )) as {size: string}[]
    return row ? Number(row.size) : undefined
  }

  async uploadedBy(blobId: string, userId: string): Promise<boolean> {
    const rows = (await this.db.query('SELECT 1 FROM blobs WHERE id = $1 AND uploader_id = $2', [blobId, userId])) as unknown[]
    return rows.length > 0
  }

  /**
   * The bytes in order, by binary COPY, passed on as they arrive. Uses its own
   * pool connection: a reader that stops half-way leaves that connection in
   * the middle of a COPY, so it is destroyed rather than returned to the pool.
   */
  async *chunks(blobId: string): AsyncGenerator<Buffer> {
    if (!UUID.test(blobId)) throw new Error('not a blob id') // it is spliced into the COPY statement
    const pool = (this.db.driver as unknown as {master: pg.Pool}).master
    const client = await pool.connect()
    let clean = false
    try {
      const out = client.query(copyTo(`COPY (SELECT data FROM blob_chunks WHERE blob_id = '${blobId}' ORDER BY idx) TO STDOUT (FORMAT binary)`))
      const bytes = new SingleByteaColumn()
      out.on('error', (error) => bytes.destroy(error))
      yield* out.pipe(bytes)
      clean = true
    } finally {
      client.release(clean ? undefined : true)
    }
  }

  /** Deletes blobs no message references once they are older than the grace period. */
  async collectGarbage(graceMs: number): Promise<number> {
    const [, count] = (await this.db.query(
      `DELETE FROM blobs b
        WHERE b.created_at < now() - make_interval(secs => $1 / 1000.0)
          AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.blob_id = b.id)`,
      [graceMs],
    )) as [unknown, number]
    return count
  }
}
