import {createHash, randomBytes} from 'node:crypto'
import {request as httpRequest} from 'node:http'
import {Readable} from 'node:stream'

import {expect} from 'chai'
import type {DataSource} from 'typeorm'

import type {RunningChatServer} from '../../server/main.js'
import {createDataSource} from '../../storage/data-source.js'
import {fakeCiphertext, registerAndLogin, type TestUser, uniqueName} from '../helpers/api.js'
import {CLUSTER_AUTH, startTestServer, testEnv} from '../helpers/cluster.js'
import {http} from '../helpers/http.js'
import {eventually, startCli} from '../helpers/processes.js'

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex')

/** Streams `source` to POST /v1/blobs with node:http, so tests control length and interruption. */
function upload(
  server: string,
  user: TestUser,
  source: Readable,
  headers: Record<string, string | number> = {},
): Promise<{status: number; body: any}> {
  return new Promise((resolve, reject) => {
    const request = httpRequest(`${server}/v1/blobs`, {
      method: 'POST',
      headers: {'content-type': 'application/octet-stream', ...user.auth, ...headers},
    })
    request.on('response', (response) => {
      const parts: Buffer[] = []
      response.on('data', (part: Buffer) => parts.push(part))
      response.on('end', () => {
        const text = Buffer.concat(parts).toString()
        resolve({status: response.statusCode!, body: text ? JSON.parse(text) : undefined})
      })
    })
    request.on('error', reject)
    source.on('error', (error) => request.destroy(error))
    source.pipe(request)
  })
}

/** `total` bytes in pieces of 64 KiB, generated as read: the test holds none of it. */
function generated(total: number, seed = 7): Readable {
  let sent = 0
  return new Readable({
    read() {
      if (sent >= total) return this.push(null)
      const size = Math.min(64 * 1024, total - sent)
      const piece = Buffer.alloc(size, (sent / 65_536 + seed) % 251)
      sent += size
      this.push(piece)
    },
  })
}

async function download(server: string, user: TestUser, blob: string): Promise<{status: number; data: Buffer; body: any}> {
  const response = await fetch(`${server}/v1/blobs/${blob}`, {headers: user.auth})
  const data = Buffer.from(await response.arrayBuffer())
  const body = /json/.test(response.headers.get('content-type') ?? '') ? JSON.parse(data.toString()) : undefined
  return {status: response.status, data, body}
}

const rows = async (db: DataSource): Promise<{blobs: number; chunks: number}> => {
  const [row] = await db.query('SELECT (SELECT count(*) FROM blobs)::int AS blobs, (SELECT count(*) FROM blob_chunks)::int AS chunks')
  return row
}

describe('blobs', function () {
  this.timeout(60_000)
  let a: RunningChatServer
  let b: RunningChatServer
  let small: RunningChatServer
  let db: DataSource
  let alice: TestUser
  let bob: TestUser
  let carol: TestUser

  before(async () => {
    db = await createDataSource({url: process.env.DATABASE_URL!}).initialize()
    ;[a, b, small] = await Promise.all([startTestServer(), startTestServer(), startTestServer(undefined, {FASTCHAT_BLOB_LIMIT_BYTES: String(1024 * 1024)})])
    alice = await registerAndLogin(a.url, uniqueName('alice'), 'alice')
    bob = await registerAndLogin(b.url, uniqueName('bob'), 'bob')
    carol = await registerAndLogin(a.url, uniqueName('carol'), 'carol')
  })
  after(async () => {
    await Promise.all([a.close(), b.close(), small.close()])
    await db.destroy()
  })

  it('is readable by its uploader and the recipients of a message referencing it, 404 to everyone else', async () => {
    const bytes = randomBytes(700 * 1024) // three chunks, the last one partial
    const uploaded = await upload(a.url, alice, Readable.from([bytes]), {'content-length': bytes.length})
    expect(uploaded.status).to.equal(201)
    expect(uploaded.body.size).to.equal(bytes.length)
    const {blob} = uploaded.body

    const own = await download(b.url, alice, blob)
    expect(own.status).to.equal(200)
    expect(sha256(own.data)).to.equal(sha256(bytes))
    expect((await download(b.url, bob, blob)).status, 'before any message').to.equal(404)

    const sent = await http('POST', `${a.url}/v1/messages`, {
      json: {to: {user: bob.username}, kind: 'image', blob, ciphertext: ''},
      headers: {...alice.auth, 'idempotency-key': 'img-1'},
    })
    expect(sent.status).to.equal(201)
    const event = (await http('GET', `${b.url}/v1/events?since=0&timeout=0`, {headers: bob.auth})).body.events[0]
    expect(event).to.include({kind: 'image', blob, ciphertext: '', from: alice.username})

    const received = await download(b.url, bob, blob)
    expect(received.status).to.equal(200)
    expect(sha256(received.data)).to.equal(sha256(bytes))
    const stranger = await download(a.url, carol, blob)
    expect(stranger.status).to.equal(404)
    expect(stranger.body.code).to.equal('FC_BLOB_NOT_FOUND')
    expect((await download(a.url, carol, '00000000-0000-4000-8000-000000000000')).body.code).to.equal('FC_BLOB_NOT_FOUND')
  })

  it('refuses to attach a blob uploaded by someone else', async () => {
    const {body} = await upload(a.url, alice, Readable.from([randomBytes(1000)]))
    const stolen = await http('POST', `${a.url}/v1/messages`, {
      json: {to: {user: carol.username}, kind: 'image', blob: body.blob, ciphertext: fakeCiphertext('caption')},
      headers: bob.auth,
    })
    expect(stolen.status).to.equal(404)
    expect(stolen.body.code).to.equal('FC_BLOB_NOT_FOUND')
    expect((await download(a.url, carol, body.blob)).status).to.equal(404)
  })

  it('answers 415 to another content type and 401 without a token, storing nothing', async () => {
    const before = await rows(db)
    const wrongType = await upload(a.url, alice, Readable.from([Buffer.from('{}')]), {'content-type': 'application/json'})
    expect(wrongType.status).to.equal(415)
    expect(wrongType.body.code).to.equal('FC_UNSUPPORTED_MEDIA_TYPE')
    const anonymous = await upload(a.url, {...alice, auth: {}}, Readable.from([Buffer.from('x')]))
    expect(anonymous.status).to.equal(401)
    expect(await rows(db)).to.deep.equal(before)
  })

  it('answers 413 above the limit, declared or streamed, and leaves no row behind', async () => {
    const before = await rows(db)
    const declared = await upload(small.url, alice, generated(2 * 1024 * 1024), {'content-length': 2 * 1024 * 1024})
    expect(declared.status).to.equal(413)
    expect(declared.body).to.include({code: 'FC_PAYLOAD_TOO_LARGE', limit: 1024 * 1024})
    // Chunked: the server finds out while streaming, after chunks were already inserted.
    const streamed = await upload(small.url, alice, generated(2 * 1024 * 1024))
    expect(streamed.status).to.equal(413)
    expect(await rows(db)).to.deep.equal(before)
    const fits = await upload(small.url, alice, generated(1024 * 1024))
    expect(fits.status).to.equal(201)
  })

  it('leaves no row behind when the client goes away mid-upload', async () => {
    const before = await rows(db)
    const source = generated(8 * 1024 * 1024)
    let sent = 0
    source.on('data', (piece: Buffer) => {
      sent += piece.length
      if (sent > 3 * 1024 * 1024) source.destroy(new Error('client crashed'))
    })
    const result = await upload(a.url, alice, source, {'content-length': 8 * 1024 * 1024}).catch((error: Error) => error)
    expect(result).to.be.instanceOf(Error)
    // Chunks were being inserted; the transaction they were in must be rolled back.
    await eventually(async () => {
      const [{active}] = await db.query(`SELECT count(*)::int AS active FROM pg_stat_activity WHERE state = 'idle in transaction' AND datname = current_database()`)
      return active === 0
    }, 'the upload transaction to end')
    expect(await rows(db)).to.deep.equal(before)
  })

  it('collects blobs no message references after the grace period', async () => {
    const orphan = (await upload(a.url, alice, Readable.from([randomBytes(100)]))).body.blob
    const kept = (await upload(a.url, alice, Readable.from([randomBytes(100)]))).body.blob
    await http('POST', `${a.url}/v1/messages`, {json: {to: {user: bob.username}, kind: 'image', blob: kept, ciphertext: ''}, headers: alice.auth})
    const fresh = (await upload(a.url, alice, Readable.from([randomBytes(100)]))).body.blob
    await db.query(`UPDATE blobs SET created_at = now() - interval '2 days' WHERE id = ANY($1::uuid[])`, [[orphan, kept]])
    const {BlobRepository} = await import('../../storage/repositories/blob.repository.js')
    expect(await new BlobRepository(db).collectGarbage(24 * 3_600_000)).to.equal(1)
    const left = await db.query('SELECT id FROM blobs WHERE id = ANY($1::uuid[]) ORDER BY id', [[orphan, kept, fresh]])
    expect(left.map((r: {id: string}) => r.id).sort()).to.deep.equal([kept, fresh].sort())
    expect((await db.query('SELECT count(*)::int AS n FROM blob_chunks WHERE blob_id = $1', [orphan]))[0].n).to.equal(0)
  })

  // Blobs move by binary COPY, piece by piece: the server never holds a file, and memory must
  // neither grow past 64 MiB for a 20 MiB file nor keep growing with each further file.
  it('streams 20 MiB files through a server process without holding them: memory plateaus', async () => {
    const server = await startCli(['server', '--port', '0'], testEnv())
    try {
      const rss = async () => {
        const text = await (await fetch(`${server.url}/metrics`, {headers: CLUSTER_AUTH})).text()
        return Number(/^fastchat_server_process_resident_memory_bytes (\d+)/m.exec(text)![1])
      }
      const user = await registerAndLogin(server.url, uniqueName('big'), 'alice')
      const total = 20 * 1024 * 1024
      const mib = (bytes: number) => (bytes / 2 ** 20).toFixed(1)
      const samples = [await rss()]
      for (let round = 0; round < 3; round++) {
        const uploaded = await upload(server.url, user, generated(total, round), {'content-length': total})
        expect(uploaded.status).to.equal(201)
        const expected = createHash('sha256')
        for await (const piece of generated(total, round)) expected.update(piece as Buffer)
        const response = await fetch(`${server.url}/v1/blobs/${uploaded.body.blob}`, {headers: user.auth})
        const got = createHash('sha256')
        let size = 0
        for await (const piece of response.body as unknown as AsyncIterable<Uint8Array>) {
          got.update(piece)
          size += piece.length
        }
        expect(size).to.equal(total)
        expect(got.digest('hex')).to.equal(expected.digest('hex'))
        samples.push(await rss())
      }
      console.log(`      RSS of the server around three 20 MiB round trips: ${samples.map(mib).join(' → ')} MiB`)
      const [start, first, , third] = samples as [number, number, number, number]
      expect(first - start, 'growth over the first 20 MiB round trip').to.be.lessThan(64 * 2 ** 20)
      // A server that held the files would grow by 20 MiB or more per round trip.
      expect(third - first, 'growth over the second and third round trips').to.be.lessThan(32 * 2 ** 20)
    } finally {
      await server.stop()
    }
  })
})
