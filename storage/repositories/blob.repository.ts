import {randomUUID} from 'node:crypto'

import {finished} from 'node:stream/promises'

import pg from 'pg'
import {from as copyFrom, to as copyTo, type CopyStreamQuery} from 'pg-copy-streams'
import type {DataSource} from 'typeorm'

import {housekeeping, longRunningPoolConfig} from '../data-source.js'
import {chunkRowHeader, COPY_HEADER, COPY_TRAILER, SingleByteaColumn} from './pg-binary-copy.js'

/**
 * Smallest `blob_chunks` row written, unless it is the last: a request arrives
 * in pieces of up to 64 KiB, stored as they come; smaller ones are joined.
 * So a row holds 64 to 128 KiB.
 */
const BLOB_ROW_MIN_BYTES = 64 * 1024
/**
 * Rows one download page reads: at most 512 KiB held in memory per download,
 * and a 25 MiB blob is about a hundred short queries.
 */
const DOWNLOAD_PAGE_ROWS = 4
/** An upload waits this long for a connection of the upload pool before it is turned away (503). */
const UPLOAD_POOL_WAIT_MS = 5_000
/** Advisory-lock namespace ("blob") under which one user's uploads check the quota one at a time. */
const QUOTA_LOCK_CLASS = 0x62_6c_6f_62
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

export class BlobTooLargeError extends Error {}

/** The upload would take the uploader past their storage quota. */
export class StorageQuotaError extends Error {
  constructor(
    readonly quotaBytes: number,
    /** Bytes of the uploader's blobs stored before this upload. */
    readonly usageBytes: number,
  ) {
    super('storage quota exceeded')
  }
}

/** Every connection of the upload pool stayed busy for UPLOAD_POOL_WAIT_MS. */
export class UploadPoolBusyError extends Error {}

export interface UploadLimits {
  /** Largest blob. */
  sizeBytes: number
  /** Most bytes of blobs one uploader may have stored, this one included. */
  quotaBytes: number
  /** What the client announced (Content-Length), checked before a byte is read. */
  declaredBytes?: number
}

export interface BlobRepositoryOptions {
  /** Connections of the upload pool (see store()). */
  uploadPoolSize?: number
}

export class BlobRepository {
  private uploadPool: pg.Pool | undefined

  constructor(
    private readonly db: DataSource,
    private readonly options: BlobRepositoryOptions = {},
  ) {}

  /**
   * An upload holds its connection for its whole transaction, as long as the
   * client takes to send the bytes. Those connections come from a small pool
   * of their own, so slow uploads (bounded per user and by deadlines in the
   * route) can at worst make other uploads wait, never the main pool every
   * other route needs (docs/architecture.md, "Blob transfers"). An upload
   * runs as long as the client sends (up to the route's transfer deadline),
   * so these connections have no statement or query timeout.
   */
  private uploads(): pg.Pool {
    if (!this.uploadPool) {
      // The main pool's hosts, routing, keepalive and connect timeout, without its statement and query timeouts.
      this.uploadPool = new pg.Pool(longRunningPoolConfig(this.db, {max: this.options.uploadPoolSize ?? 4, waitMs: UPLOAD_POOL_WAIT_MS}))
      // An idle connection that breaks is dropped by the pool; the next upload gets a new one.
      this.uploadPool.on('error', () => undefined)
    }
    return this.uploadPool
  }

  /** Closes the upload pool (after the server stopped taking uploads). */
  async close(): Promise<void> {
    await this.uploadPool?.end()
    this.uploadPool = undefined
  }

  /** Bytes of the blobs this user uploaded that still exist. */
  async usage(uploaderId: string): Promise<number> {
    const [row] = (await this.db.query('SELECT coalesce(sum(size), 0)::text AS bytes FROM blobs WHERE uploader_id = $1', [uploaderId])) as {bytes: string}[]
    return Number(row?.bytes ?? 0)
  }

  /**
   * Stores `source` as one blob in a single transaction: the blob becomes
   * visible only when every byte is in. A source that fails or grows past
   * the size limit or the uploader's quota rolls everything back, so an
   * interrupted or refused upload leaves no row behind. The bytes go in by
   * binary COPY, each piece of the request as one row (small pieces
   * coalesced), so they are never copied or encoded on the way; COPY's flow
   * control is the back-pressure on the client.
   *
   * The quota is checked three times: against what the client announced
   * before anything is read, against the bytes as they stream, and once
   * more at the end under a per-uploader lock, so that two uploads running
   * side by side cannot both slip under it.
   */
  async store(uploaderId: string, source: AsyncIterable<Buffer>, limits: UploadLimits): Promise<{id: string; size: number}> {
    const usage = await this.usage(uploaderId)
    if (limits.declaredBytes !== undefined && usage + limits.declaredBytes > limits.quotaBytes) throw new StorageQuotaError(limits.quotaBytes, usage)
    const id = randomUUID()
    let client: pg.PoolClient
    try {
      client = await this.uploads().connect()
    } catch (error) {
      if (error instanceof Error && /timeout exceeded when trying to connect/.test(error.message)) throw new UploadPoolBusyError()
      throw error
    }
    let copy: CopyStreamQuery | undefined
    let clean = false
    try {
      await client.query('BEGIN')
      await client.query('INSERT INTO blobs (id, uploader_id, size) VALUES ($1, $2, 0)', [id, uploaderId])
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
        if (size > limits.sizeBytes) throw new BlobTooLargeError()
        if (usage + size > limits.quotaBytes) throw new StorageQuotaError(limits.quotaBytes, usage)
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
      // Held to commit: the uploader's other uploads wait here, then see this one.
      await client.query('SELECT pg_advisory_xact_lock($1, ($2::bigint % 2147483647)::int)', [QUOTA_LOCK_CLASS, uploaderId])
      const [others] = (
        await client.query<{bytes: string}>('SELECT coalesce(sum(size), 0)::text AS bytes FROM blobs WHERE uploader_id = $1 AND id <> $2', [uploaderId, id])
      ).rows
      const stored = Number(others?.bytes ?? 0)
      if (stored + size > limits.quotaBytes) throw new StorageQuotaError(limits.quotaBytes, stored)
      await client.query('UPDATE blobs SET size = $2 WHERE id = $1', [id, size])
      await client.query('COMMIT')
      clean = true
      return {id, size}
    } catch (error) {
      // Destroying the COPY makes the server abort it; the rollback then drops the blob row too.
      if (copy && !copy.destroyed) {
        copy.destroy(error as Error)
        await finished(copy).catch(() => undefined)
      }
      clean = await client
        .query('ROLLBACK')
        .then(() => true)
        .catch(() => false)
      throw error
    } finally {
      // A connection whose rollback failed is in an unknown state: closed, not pooled.
      client.release(clean ? undefined : true)
    }
  }

  /**
   * The size of a blob the user may read: they uploaded it, or they received
   * a message that references it (directly, or as a member of its group in
   * the epoch it was sent in, unless they block its sender).
   */
  async readableSize(blobId: string, userId: string): Promise<number | undefined> {
    const [row] = (await this.db.query(
      `SELECT b.size FROM blobs b
        WHERE b.id = $1
          AND (b.uploader_id = $2
               OR EXISTS (SELECT 1 FROM messages m WHERE m.blob_id = b.id AND m.recipient_id = $2)
               OR EXISTS (SELECT 1 FROM messages m
                            JOIN group_epochs ge ON ge.group_id = m.group_id AND ge.epoch = m.epoch
                           WHERE m.blob_id = b.id AND $2::bigint = ANY(ge.member_ids)
                             -- files follow messages: not a group file from a member the reader blocks
                             AND NOT EXISTS (SELECT 1 FROM blocks bl WHERE bl.blocker_id = $2 AND bl.blocked_id = m.sender_id)))`,
      [blobId, userId],
    )) as {size: string}[]
    return row ? Number(row.size) : undefined
  }

  async uploadedBy(blobId: string, userId: string): Promise<boolean> {
    const rows = (await this.db.query('SELECT 1 FROM blobs WHERE id = $1 AND uploader_id = $2', [blobId, userId])) as unknown[]
    return rows.length > 0
  }

  /**
   * The bytes in order, a page of DOWNLOAD_PAGE_ROWS rows at a time. Each page
   * is read whole by binary COPY (bytes passed through, never hex-encoded) on
   * a pool connection that goes back to the pool before the caller sees the
   * first byte: a client that reads slowly, or not at all, holds at most one
   * page of memory and no connection (docs/architecture.md, "Blob transfers").
   * A blob is never changed once stored, so reading it in several statements
   * is safe; one deleted half-way simply ends early (the caller compares the
   * length). Each page is one short statement, so it runs under the request
   * timeouts of the main pool, not for as long as the download.
   */
  async *chunks(blobId: string): AsyncGenerator<Buffer> {
    if (!UUID.test(blobId)) throw new Error('not a blob id') // it is spliced into the COPY statement
    for (let first = 0; ; first += DOWNLOAD_PAGE_ROWS) {
      const page = await this.page(blobId, first)
      yield* page.pieces
      if (page.rows < DOWNLOAD_PAGE_ROWS) return
    }
  }

  private async page(blobId: string, first: number): Promise<{pieces: Buffer[]; rows: number}> {
    const pool = (this.db.driver as unknown as {master: pg.Pool}).master
    const client = await pool.connect()
    let clean = false
    try {
      const out = client.query(
        copyTo(
          `COPY (SELECT data FROM blob_chunks WHERE blob_id = '${blobId}' AND idx >= ${first} AND idx < ${first + DOWNLOAD_PAGE_ROWS} ORDER BY idx) ` +
            'TO STDOUT (FORMAT binary)',
        ),
      )
      const bytes = new SingleByteaColumn()
      out.on('error', (error) => bytes.destroy(error))
      const pieces: Buffer[] = []
      for await (const piece of out.pipe(bytes)) pieces.push(piece as Buffer)
      clean = true
      return {pieces, rows: bytes.rows}
    } finally {
      // A COPY that failed half-way leaves the connection mid-protocol: closed, not pooled.
      client.release(clean ? undefined : true)
    }
  }

  /** Deletes blobs no message references once they are older than the grace period. */
  async collectGarbage(graceMs: number): Promise<number> {
    const [, count] = (await housekeeping(this.db, (query) =>
      query(
        `DELETE FROM blobs b
          WHERE b.created_at < now() - make_interval(secs => $1 / 1000.0)
            AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.blob_id = b.id)`,
        [graceMs],
      ),
    )) as [unknown, number]
    return count
  }
}
