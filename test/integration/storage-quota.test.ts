import {expect} from 'chai'
import type {DataSource} from 'typeorm'

import type {RunningChatServer} from '../../server/main.js'
import {createDataSource} from '../../storage/data-source.js'
import {BlobRepository} from '../../storage/repositories/blob.repository.js'
import {registerAndLogin, type TestUser, uniqueName} from '../helpers/api.js'
import {startTestServer} from '../helpers/cluster.js'
import {uploadBytes} from '../helpers/slow-client.js'

/*
 * Issue 12, hole 6 (storage quota): the bytes of the blobs a user uploaded
 * that still exist are counted against FASTCHAT_STORAGE_QUOTA_BYTES; an upload
 * that would pass it is refused before a byte is read when its length is
 * announced, cut and rolled back when it is not, and two at once cannot both
 * slip under it.
 */

const MiB = 1024 * 1024
const QUOTA = 3 * MiB

const upload = (server: string, user: TestUser, total: number, announced: boolean) => uploadBytes(server, user.auth, total, announced)

describe('hole 6: per-user storage quota', function () {
  this.timeout(60_000)
  let server: RunningChatServer
  let db: DataSource

  const stored = async (user: TestUser): Promise<{blobs: number; bytes: number}> => {
    const [row] = await db.query(
      `SELECT count(DISTINCT b.id)::int AS blobs, coalesce(sum(octet_length(c.data)), 0)::int AS bytes
         FROM blobs b JOIN users u ON u.id = b.uploader_id LEFT JOIN blob_chunks c ON c.blob_id = b.id WHERE u.username = $1`,
      [user.username],
    )
    return row
  }

  before(async () => {
    db = await createDataSource({url: process.env.DATABASE_URL!}).initialize()
    server = await startTestServer(undefined, {FASTCHAT_STORAGE_QUOTA_BYTES: String(QUOTA)})
  })
  after(async () => {
    await server.close()
    await db.destroy()
  })

  it('refuses with 413 FC_STORAGE_QUOTA_EXCEEDED an upload past the quota, announced or streamed, and leaves no row behind', async () => {
    const alice = await registerAndLogin(server.url, uniqueName('quota'), 'alice')
    const first = await upload(server.url, alice, 2 * MiB, true)
    expect(first.status).to.equal(201)

    const announced = await upload(server.url, alice, 2 * MiB, true)
    expect(announced.status).to.equal(413)
    expect(announced.body).to.include({code: 'FC_STORAGE_QUOTA_EXCEEDED', quota: QUOTA, usage: 2 * MiB})
    // Chunked: the server finds out while streaming, after chunks went in; they are rolled back.
    const streamed = await upload(server.url, alice, 2 * MiB, false)
    expect(streamed.status).to.equal(413)
    expect(streamed.body).to.include({code: 'FC_STORAGE_QUOTA_EXCEEDED', quota: QUOTA, usage: 2 * MiB})
    expect(await stored(alice)).to.include({blobs: 1, bytes: 2 * MiB})

    // Up to the quota exactly is fine; one byte more is not.
    expect((await upload(server.url, alice, MiB, false)).status).to.equal(201)
    const full = await upload(server.url, alice, 1, true)
    expect(full.status).to.equal(413)
    expect(full.body).to.include({usage: QUOTA})

    // Another user has a quota of their own.
    const bob = await registerAndLogin(server.url, uniqueName('quota'), 'bob')
    expect((await upload(server.url, bob, 2 * MiB, true)).status).to.equal(201)
  })

  it('counts only blobs that still exist: space comes back when a blob is collected', async () => {
    const carol = await registerAndLogin(server.url, uniqueName('quota'), 'carol')
    const big = await upload(server.url, carol, 3 * MiB, true)
    expect(big.status).to.equal(201)
    expect((await upload(server.url, carol, MiB, true)).status).to.equal(413)
    await db.query(`UPDATE blobs SET created_at = now() - interval '2 days' WHERE id = $1`, [big.body.blob])
    expect(await new BlobRepository(db).collectGarbage(24 * 3_600_000)).to.be.at.least(1)
    expect((await upload(server.url, carol, MiB, true)).status).to.equal(201)
  })

  it('lets only one of two concurrent uploads that each fit, but not together, through', async () => {
    const dave = await registerAndLogin(server.url, uniqueName('quota'), 'mallory')
    const results = await Promise.all([upload(server.url, dave, 2 * MiB, true), upload(server.url, dave, 2 * MiB, true)])
    expect(results.map((r) => r.status).sort()).to.deep.equal([201, 413])
    expect(results.find((r) => r.status === 413)!.body).to.include({code: 'FC_STORAGE_QUOTA_EXCEEDED'})
    expect((await stored(dave)).bytes).to.equal(2 * MiB)
  })
})
