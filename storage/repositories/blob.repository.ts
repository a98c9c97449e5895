import {randomUUID} from 'node:crypto'

import type {DataSource} from 'typeorm'

/** Bytes per `blob_chunks` row: what each side holds in memory at a time, and few rows per file. */
export const BLOB_CHUNK_BYTES = 256 * 1024

export class BlobTooLargeError extends Error {}

export class BlobRepository {
  constructor(private readonly db: DataSource) {}

  /**
   * Stores `source` as one blob, chunk by chunk, in a single transaction: the
   * blob becomes visible only when every byte is in. A source that fails or
   * grows past `limitBytes` rolls everything back, so an interrupted or
   * oversize upload leaves no row behind. Back-pressure comes free: the next
   * piece of the source is read only after the previous chunk was inserted.
   */
  async store(uploaderId: string, source: AsyncIterable<Buffer>, limitBytes: number): Promise<{id: string; size: number}> {
    const id = randomUUID()
    const runner = this.db.createQueryRunner()
    await runner.connect()
    await runner.startTransaction()
    try {
      await runner.query('INSERT INTO blobs (id, uploader_id, size) VALUES ($1, $2, 0)', [id, uploaderId])
      let size = 0
      let idx = 0
      let pending: Buffer[] = []
      let pendingBytes = 0
      const flush = async (bytes: Buffer) => {
        await runner.query('INSERT INTO blob_chunks (blob_id, idx, data) VALUES ($1, $2, $3)', [id, idx++, bytes])
      }
      for await (const piece of source) {
        size += piece.length
        if (size > limitBytes) throw new BlobTooLargeError()
        pending.push(piece)
        pendingBytes += piece.length
        if (pendingBytes >= BLOB_CHUNK_BYTES) {
          let joined = Buffer.concat(pending, pendingBytes)
          while (joined.length >= BLOB_CHUNK_BYTES) {
            await flush(joined.subarray(0, BLOB_CHUNK_BYTES))
            joined = joined.subarray(BLOB_CHUNK_BYTES)
          }
          pending = joined.length > 0 ? [Buffer.from(joined)] : []
          pendingBytes = joined.length
        }
      }
      if (pendingBytes > 0) await flush(Buffer.concat(pending, pendingBytes))
      await runner.query('UPDATE blobs SET size = $2 WHERE id = $1', [id, size])
      await runner.commitTransaction()
      return {id, size}
    } catch (error) {
      await runner.rollbackTransaction().catch(() => undefined)
      throw error
    } finally {
      await runner.release()
    }
  }

  /**
   * The size of a blob the user may read: they uploaded it, or they received
   * a message that references it (directly or as a member of its group).
   */
  async readableSize(blobId: string, userId: string): Promise<number | undefined> {
    const [row] = (await this.db.query(
      `SELECT b.size FROM blobs b
        WHERE b.id = $1
          AND (b.uploader_id = $2
               OR EXISTS (SELECT 1 FROM messages m WHERE m.blob_id = b.id AND m.recipient_id = $2)
               OR EXISTS (SELECT 1 FROM messages m JOIN group_members gm ON gm.group_id = m.group_id
                           WHERE m.blob_id = b.id AND gm.user_id = $2))`,
      [blobId, userId],
    )) as {size: string}[]
    return row ? Number(row.size) : undefined
  }

  async uploadedBy(blobId: string, userId: string): Promise<boolean> {
    const rows = (await this.db.query('SELECT 1 FROM blobs WHERE id = $1 AND uploader_id = $2', [blobId, userId])) as unknown[]
    return rows.length > 0
  }

  /** The bytes, one chunk per query, so a large file never sits in memory whole. */
  async *chunks(blobId: string): AsyncGenerator<Buffer> {
    for (let idx = 0; ; idx++) {
      const rows = (await this.db.query('SELECT data FROM blob_chunks WHERE blob_id = $1 AND idx = $2', [blobId, idx])) as {data: Buffer}[]
      if (rows.length === 0) return
      yield rows[0]!.data
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
