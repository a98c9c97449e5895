import {once} from 'node:events'
import {connect, createServer, type Server, type Socket} from 'node:net'

import {expect} from 'chai'
import type {DataSource} from 'typeorm'

import type {RunningChatServer} from '../../server/main.js'
import {createDataSource} from '../../storage/data-source.js'
import type {RunningSuperserver} from '../../superserver/main.js'
import {fakeCiphertext, PASSWORD, poll, registerAndLogin, send, type TestUser, uniqueName} from '../helpers/api.js'
import {startTestServer, startTestSuperserver, waitForHealthy} from '../helpers/cluster.js'
import {http} from '../helpers/http.js'
import {eventually} from '../helpers/processes.js'
import {type StalledDownload, uploadBytes, stalledDownload, type TrickledUpload, trickledUpload} from '../helpers/slow-client.js'

/*
 * Issue 12, hole 4: one account must not be able to take a chat server's
 * database pool with blob transfers (downloads that never read, uploads that
 * trickle), and a server whose database is unusable must say so in /healthz
 * and in its heartbeat, so the superserver stops sending clients there.
 */

const MiB = 1024 * 1024
const IDLE_MS = 1_500
const TOTAL_MS = 6_000
const DOWNLOADS_PER_USER = 4
const UPLOADS_PER_USER = 2
/** Far more than the socket buffers on both sides hold (4 MiB here): a download that is not read stalls. */
const BLOB_BYTES = 48 * MiB

const upload = (server: string, user: TestUser, total: number) => uploadBytes(server, user.auth, total)

/** One round of another user's database routes, each timed. */
async function victimRound(server: string, victim: TestUser, friend: TestUser, round: number): Promise<{route: string; status: number; ms: number}[]> {
  const timed = async (route: string, call: () => Promise<{status: number}>) => {
    const started = performance.now()
    const {status} = await call()
    return {route, status, ms: Math.round(performance.now() - started)}
  }
  return [
    await timed('POST /v1/sessions', () => http('POST', `${server}/v1/sessions`, {json: {username: victim.username, password: PASSWORD}})),
    await timed('POST /v1/messages', () => send(victim, friend.username, fakeCiphertext(`during-attack-${round}`))),
    await timed('GET /v1/events', () => poll(friend, 0, 0)),
    await timed('GET /v1/users/:name', () => http('GET', `${server}/v1/users/${friend.username}`, {headers: victim.auth})),
  ]
}

describe('hole 4: resource exhaustion by blob transfers', function () {
  this.timeout(120_000)
  let db: DataSource

  before(async () => {
    db = await createDataSource({url: process.env.DATABASE_URL!}).initialize()
  })
  after(async () => db.destroy())

  describe('one account with stalled downloads and trickling uploads', () => {
    let server: RunningChatServer
    let mallory: TestUser
    let victim: TestUser
    let friend: TestUser
    let blob: string
    let downloads: StalledDownload[] = []
    let uploads: TrickledUpload[] = []

    before(async () => {
      server = await startTestServer(undefined, {
        FASTCHAT_TRANSFER_IDLE_MS: String(IDLE_MS),
        FASTCHAT_TRANSFER_TIMEOUT_MS: String(TOTAL_MS),
        FASTCHAT_DOWNLOADS_PER_USER: String(DOWNLOADS_PER_USER),
        FASTCHAT_UPLOADS_PER_USER: String(UPLOADS_PER_USER),
        FASTCHAT_BLOB_LIMIT_BYTES: String(BLOB_BYTES),
      })
      mallory = await registerAndLogin(server.url, uniqueName('mallory'), 'mallory')
      victim = await registerAndLogin(server.url, uniqueName('victim'), 'alice')
      friend = await registerAndLogin(server.url, uniqueName('friend'), 'bob')
      const stored = await upload(server.url, mallory, BLOB_BYTES)
      expect(stored.status).to.equal(201)
      blob = stored.body.blob
    })
    after(async () => {
      for (const transfer of [...downloads, ...uploads]) transfer.socket.destroy()
      for (const transfer of uploads) transfer.stop()
      await server.close()
    })

    it('keeps other users\' database routes answering 2xx promptly, refuses transfers beyond the cap with 429, and cuts idle and overlong ones', async () => {
      const attackStarted = performance.now()
      downloads = await Promise.all(Array.from({length: 24}, () => stalledDownload(server.url, `/v1/blobs/${blob}`, mallory.token)))
      uploads = await Promise.all(Array.from({length: 20}, () => trickledUpload(server.url, mallory.token, {declaredBytes: 4 * MiB, firstBytes: 64 * 1024, everyMs: 250})))
      const uploadsStarted = performance.now()
      const answered = new Map<TrickledUpload, {status: number; body?: any; ms: number}>()
      for (const transfer of uploads) {
        transfer.answer.then((answer) => answered.set(transfer, {...answer, ms: performance.now() - uploadsStarted}), () => undefined)
      }
      // Every upload is either answered or copying into the database.
      await eventually(async () => {
        const [{copying}] = await db.query(
          `SELECT count(*)::int AS copying FROM pg_stat_activity WHERE datname = current_database() AND state <> 'idle' AND query LIKE 'COPY blob_chunks%'`,
        )
        return answered.size + copying >= uploads.length
      }, 'every upload to be answered or under way')

      const rounds = []
      for (let round = 0; round < 3; round++) rounds.push(...(await victimRound(server.url, victim, friend, round)))
      console.log(`      other user's requests during the attack: ${rounds.map((r) => `${r.route} ${r.status} ${r.ms} ms`).join('; ')}`)
      for (const r of rounds) {
        expect(r.status, `${r.route} during the attack`).to.be.within(200, 299)
        expect(r.ms, `${r.route} latency during the attack`).to.be.below(2_000)
      }

      const downloadStatuses = downloads.map((d) => d.answer.status)
      expect(downloadStatuses.filter((s) => s === 200), 'downloads let through').to.have.length(DOWNLOADS_PER_USER)
      for (const refused of downloads.filter((d) => d.answer.status !== 200)) {
        expect(refused.answer.status).to.equal(429)
        expect(refused.answer.body).to.include({code: 'FC_TOO_MANY_TRANSFERS', limit: DOWNLOADS_PER_USER})
        expect(refused.answer.headers['retry-after']).to.match(/^\d+$/)
      }
      await eventually(async () => answered.size >= uploads.length - UPLOADS_PER_USER, 'the uploads beyond the cap to be refused')
      const refusedUploads = [...answered.values()]
      expect(refusedUploads.map((a) => a.status)).to.deep.equal(Array(uploads.length - UPLOADS_PER_USER).fill(429))
      expect(refusedUploads[0]!.body).to.include({code: 'FC_TOO_MANY_TRANSFERS', limit: UPLOADS_PER_USER})

      // The downloads that never read are cut after the idle deadline (Node checks a socket once
      // per period, so between one and two periods after the last byte moved): the cap frees up.
      await eventually(async () => {
        const again = await Promise.all(Array.from({length: DOWNLOADS_PER_USER}, () => fetch(`${server.url}/v1/blobs/${blob}`, {headers: mallory.auth})))
        await Promise.all(again.map((answer) => answer.body?.cancel()))
        return again.every((answer) => answer.status === 200)
      }, 'every download slot to be free again')
      const freedAfter = performance.now() - attackStarted
      console.log(`      stalled downloads cut, every slot free again after ${Math.round(freedAfter)} ms (idle deadline ${IDLE_MS} ms)`)
      expect(freedAfter).to.be.at.least(IDLE_MS)
      const delivered = await Promise.all(downloads.filter((d) => d.answer.status === 200).map((d) => d.drain()))
      for (const bytes of delivered) expect(bytes, 'bytes a cut download got').to.be.below(BLOB_BYTES)

      // The trickling uploads never go idle; the total deadline ends them with a 408, storing nothing.
      const kept = uploads.filter((u) => !answered.has(u))
      expect(kept).to.have.length(UPLOADS_PER_USER)
      const cut = await Promise.all(kept.map((u) => u.answer))
      for (const answer of cut) expect(answer.body).to.include({status: 408, code: 'FC_TRANSFER_TIMEOUT'})
      const cutAfter = performance.now() - uploadsStarted
      expect(cutAfter).to.be.within(TOTAL_MS - 500, TOTAL_MS + 4_000)
      const [{n}] = await db.query('SELECT count(*)::int AS n FROM blobs b JOIN users u ON u.id = b.uploader_id WHERE u.username = $1', [mallory.username])
      expect(n, 'blobs left by mallory').to.equal(1)
    })

    it('answers 408 to an upload that stops sending, after the idle deadline, storing nothing', async () => {
      const started = performance.now()
      const stalled = await trickledUpload(server.url, friend.token, {declaredBytes: 4 * MiB, firstBytes: 256 * 1024, everyMs: 0})
      uploads.push(stalled)
      const answer = await stalled.answer
      const ms = performance.now() - started
      expect(answer.status).to.equal(408)
      expect(answer.body).to.include({code: 'FC_TRANSFER_TIMEOUT'})
      expect(ms).to.be.within(IDLE_MS - 200, IDLE_MS + 3_000)
      await stalled.closed
      const [{n}] = await db.query('SELECT count(*)::int AS n FROM blobs b JOIN users u ON u.id = b.uploader_id WHERE u.username = $1', [friend.username])
      expect(n).to.equal(0)
    })
  })

  describe('a chat server whose database is unreachable', () => {
    let superserver: RunningSuperserver
    let proxy: TcpProxy
    let behindProxy: RunningChatServer
    let direct: RunningChatServer

    before(async () => {
      const database = new URL(process.env.DATABASE_URL!)
      proxy = await TcpProxy.start(database.hostname, Number(database.port || 5432))
      const proxied = new URL(database)
      proxied.hostname = '127.0.0.1'
      proxied.port = String(proxy.port)
      superserver = await startTestSuperserver()
      behindProxy = await startTestServer(superserver.url, {DATABASE_URL: proxied.toString(), FASTCHAT_HEALTH_TIMEOUT_MS: '500'})
      direct = await startTestServer(superserver.url)
      await waitForHealthy(superserver.url, [behindProxy.url, direct.url])
    })
    after(async () => {
      proxy.forward()
      await Promise.all([behindProxy.close(), direct.close()])
      await superserver.close()
      await proxy.close()
    })

    it('answers 503 on /healthz and is no longer assigned by the superserver, until the database is back', async () => {
      expect((await http('GET', `${behindProxy.url}/healthz`)).status).to.equal(200)
      const assigned = new Set<string>()
      for (let i = 0; i < 4; i++) assigned.add((await http('GET', `${superserver.url}/v1/assign`)).body.server)
      expect([...assigned].sort()).to.deep.equal([behindProxy.url, direct.url].sort())

      // Open connections are cut and new ones are accepted but never answered: a dead network path.
      proxy.blackhole()
      const health = await eventually(async () => {
        const answer = await http('GET', `${behindProxy.url}/healthz`)
        return answer.status === 503 ? answer : undefined
      }, '/healthz to report the database')
      expect(health.body).to.include({status: 'unavailable', database: 'unavailable'})
      expect(health.body.reason).to.be.a('string').and.not.empty
      await eventually(async () => {
        for (let i = 0; i < 6; i++) {
          if ((await http('GET', `${superserver.url}/v1/assign`)).body.server !== direct.url) return false
        }
        return true
      }, 'the superserver to assign only the server that can reach its database')

      proxy.forward()
      await eventually(async () => (await http('GET', `${behindProxy.url}/healthz`)).status === 200, '/healthz to recover')
      await eventually(async () => {
        const seen = new Set<string>()
        for (let i = 0; i < 6; i++) seen.add((await http('GET', `${superserver.url}/v1/assign`)).body.server)
        return seen.has(behindProxy.url)
      }, 'the recovered server to be assigned again')
    })
  })
})

/** A TCP forwarder in front of PostgreSQL that the test can turn into a black hole and back. */
class TcpProxy {
  private mode: 'forward' | 'blackhole' = 'forward'
  private readonly open = new Set<Socket>()
  /** Connections accepted while black-holed: never answered. */
  private readonly held = new Set<Socket>()

  private constructor(
    private readonly server: Server,
    readonly port: number,
  ) {}

  static async start(host: string, port: number): Promise<TcpProxy> {
    let proxy: TcpProxy | undefined
    const server = createServer((client) => {
      proxy!.open.add(client)
      client.on('error', () => undefined)
      client.once('close', () => proxy!.open.delete(client))
      if (proxy!.mode === 'blackhole') {
        proxy!.held.add(client) // accepted, never answered
        return
      }
      const upstream = connect(port, host)
      upstream.on('error', () => client.destroy())
      proxy!.open.add(upstream)
      upstream.once('close', () => {
        proxy!.open.delete(upstream)
        client.destroy()
      })
      client.once('close', () => upstream.destroy())
      client.pipe(upstream).pipe(client)
    })
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    proxy = new TcpProxy(server, (server.address() as {port: number}).port)
    return proxy
  }

  /** Cuts every open connection; new ones hang. */
  blackhole(): void {
    this.mode = 'blackhole'
    for (const socket of this.open) socket.destroy()
  }

  forward(): void {
    this.mode = 'forward'
    for (const socket of this.held) socket.destroy()
    this.held.clear()
  }

  async close(): Promise<void> {
    for (const socket of this.open) socket.destroy()
    await new Promise((resolve) => this.server.close(resolve))
  }
}
