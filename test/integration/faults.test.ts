import {mkdtemp, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'

import {expect} from 'chai'
import type {DataSource} from 'typeorm'

import type {RunningChatServer} from '../../server/main.js'
import {ensureDatabase} from '../../storage/admin.js'
import {createDataSource, openDatabase} from '../../storage/data-source.js'
import {type EmbeddedDatabase, freePort, startEmbeddedDatabase} from '../../storage/embedded.js'
import type {RunningSuperserver} from '../../superserver/main.js'
import {fakeCiphertext, registerAndLogin, type TestUser, uniqueName} from '../helpers/api.js'
import {CliUser} from '../helpers/cli.js'
import {startTestServer, startTestSuperserver, testEnv, waitForHealthy} from '../helpers/cluster.js'
import {eventually, startCli} from '../helpers/processes.js'

/*
 * Faults injected while the system works: PostgreSQL restarted under load, a
 * chat server killed in the middle of an upload, the superserver gone. Each
 * test counts what was acknowledged and what arrived.
 */

/** A sender that retries every message until it is acknowledged, with one Idempotency-Key per message. */
async function sendUntilAcknowledged(from: TestUser, to: string, text: string, statuses: Map<number, number>): Promise<string> {
  const key = `${from.username}-${text}`
  for (let attempt = 0; attempt < 200; attempt++) {
    try {
      const answer = await fetch(`${from.server}/v1/messages`, {
        method: 'POST',
        headers: {...from.auth, 'content-type': 'application/json', 'idempotency-key': key},
        body: JSON.stringify({to: {user: to}, kind: 'text', ciphertext: fakeCiphertext(text)}),
        signal: AbortSignal.timeout(5_000),
      })
      statuses.set(answer.status, (statuses.get(answer.status) ?? 0) + 1)
      if (answer.status === 201) return ((await answer.json()) as {id: string}).id
      await answer.body?.cancel()
    } catch {
      statuses.set(0, (statuses.get(0) ?? 0) + 1) // no answer at all
    }
    await sleep(50)
  }
  throw new Error(`${key} was never acknowledged`)
}

/** A receiver that follows its cursor through errors, collecting every event once per seq. */
function follow(user: TestUser, stop: AbortSignal) {
  const seen: {seq: number; id: string}[] = []
  let since = 0
  const done = (async () => {
    while (!stop.aborted) {
      try {
        const answer = await fetch(`${user.server}/v1/events?since=${since}&timeout=1000`, {headers: user.auth, signal: AbortSignal.timeout(5_000)})
        if (answer.status !== 200) {
          await answer.body?.cancel()
          await sleep(50)
          continue
        }
        const body = (await answer.json()) as {events: {seq: number; id: string}[]; next: number}
        seen.push(...body.events.map((e) => ({seq: e.seq, id: e.id})))
        since = body.next
      } catch {
        await sleep(50)
      }
    }
  })()
  return {seen, done}
}

describe('faults', function () {
  this.timeout(120_000)

  describe('PostgreSQL restarted under load', () => {
    let dir: string
    let database: EmbeddedDatabase
    let port: number
    const servers: RunningChatServer[] = []

    before(async () => {
      dir = await mkdtemp(join(tmpdir(), 'fastchat-pg-restart-'))
      port = await freePort()
      database = await startEmbeddedDatabase({dataDir: dir, port})
    })
    after(async () => {
      await Promise.all(servers.map((server) => server.close()))
      await database.stop()
      await rm(dir, {recursive: true, force: true})
    })

    it('loses no acknowledged message: servers reconnect, clients retry, every message arrives once', async () => {
      const url = await ensureDatabase(database.url, 'fastchat')
      await (await openDatabase({url, poolSize: 2, applicationName: 'fastchat-test'})).destroy()
      servers.push(...(await Promise.all([startTestServer(undefined, {DATABASE_URL: url}), startTestServer(undefined, {DATABASE_URL: url})])))
      const senders = await Promise.all([0, 1, 2, 3].map((i) => registerAndLogin(servers[i % 2]!.url, uniqueName(`s${i}x`))))
      const receivers = await Promise.all([0, 1, 2, 3].map((i) => registerAndLogin(servers[(i + 1) % 2]!.url, uniqueName(`r${i}x`))))
      const stop = new AbortController()
      const following = receivers.map((receiver) => follow(receiver, stop.signal))
      const statuses = new Map<number, number>()
      const acknowledged: {to: number; id: string}[] = []
      const PER_SENDER = 100

      const sending = senders.map(async (sender, i) => {
        for (let n = 0; n < PER_SENDER; n++) {
          const to = (i + n) % receivers.length
          acknowledged.push({to, id: await sendUntilAcknowledged(sender, receivers[to]!.username, `m${n}`, statuses)})
          await sleep(5)
        }
      })
      await eventually(async () => acknowledged.length >= 100, '100 messages acknowledged before the restart', 30_000)
      await database.stop()
      const downAt = acknowledged.length
      await sleep(1_500)
      database = await startEmbeddedDatabase({dataDir: dir, port})
      await Promise.all(sending)
      expect(acknowledged.length).to.be.greaterThan(downAt)

      for (const [i, receiver] of receivers.entries()) {
        const expected = acknowledged.filter((a) => a.to === i).map((a) => a.id)
        await eventually(
          async () => expected.every((id) => following[i]!.seen.some((event) => event.id === id)),
          `${receiver.username} to have every acknowledged message`,
          30_000,
        )
      }
      stop.abort()
      await Promise.all(following.map((f) => f.done))
      const received = following.reduce((sum, f) => sum + f.seen.length, 0)
      for (const f of following) {
        expect(new Set(f.seen.map((e) => e.id)).size, 'no message twice').to.equal(f.seen.length)
        expect(f.seen.map((e) => e.seq), 'the cursor never skipped').to.deep.equal(f.seen.map((_, k) => k + 1))
      }
      expect(received).to.equal(acknowledged.length)
      expect(statuses.has(500), `statuses seen: ${JSON.stringify([...statuses])}`).to.equal(false)
      console.log(
        `      postgres restart: ${acknowledged.length} acknowledged (${downAt} before the restart), ${received} received; ` +
          `answers during the run: ${[...statuses].map(([s, n]) => `${s || 'no answer'}×${n}`).join(' ')}`,
      )
    })
  })

  describe('a chat server killed in the middle of an upload', () => {
    let db: DataSource
    before(async () => {
      db = await createDataSource({url: process.env.DATABASE_URL!}).initialize()
    })
    after(async () => db.destroy())

    it('leaves no half blob visible', async () => {
      const server = await startCli(['server', '--port', '0'], testEnv())
      const user = await registerAndLogin(server.url, uniqueName('uploader'))
      const userId = (await db.query('SELECT id::text FROM users WHERE username = $1', [user.username]))[0].id
      let sent = 0
      const body = new ReadableStream<Uint8Array>({
        async pull(controller) {
          if (sent >= 8 * 1024 * 1024) return controller.close()
          controller.enqueue(new Uint8Array(64 * 1024).fill(7))
          sent += 64 * 1024
          await sleep(5)
        },
      })
      const upload = fetch(`${server.url}/v1/blobs`, {
        method: 'POST',
        headers: {...user.auth, 'content-type': 'application/octet-stream'},
        body,
        duplex: 'half',
      } as RequestInit).catch((error: Error) => error)
      await eventually(async () => sent >= 2 * 1024 * 1024, 'the upload to be under way')
      expect(await server.stop('SIGKILL')).to.equal('SIGKILL')
      expect(await upload).to.be.instanceOf(Error)
      // The server's transaction dies with its connection: nothing of it stays.
      await eventually(
        async () => (await db.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'fastchat-server' AND state = 'idle in transaction'`))[0].n === 0,
        'the killed server\'s transaction to be gone',
      )
      const blobs = await db.query('SELECT count(*)::int AS n FROM blobs WHERE uploader_id = $1', [userId])
      const chunks = await db.query('SELECT count(*)::int AS n FROM blob_chunks c JOIN blobs b ON b.id = c.blob_id WHERE b.uploader_id = $1', [userId])
      const orphans = await db.query('SELECT count(*)::int AS n FROM blob_chunks c WHERE NOT EXISTS (SELECT 1 FROM blobs b WHERE b.id = c.blob_id)')
      expect([blobs[0].n, chunks[0].n, orphans[0].n]).to.deep.equal([0, 0, 0])
    })
  })

  describe('the superserver gone', () => {
    let superserver: RunningSuperserver
    let server: RunningChatServer

    before(async () => {
      superserver = await startTestSuperserver()
      server = await startTestServer(superserver.url)
      await waitForHealthy(superserver.url, [server.url])
    })
    after(async () => server.close())

    it('lets running clients keep talking to their server, and tells new ones clearly', async () => {
      const [alice, bob] = await Promise.all([CliUser.create('alice', superserver.url), CliUser.create('bob', superserver.url)])
      await Promise.all([alice.register(), bob.register()])
      await superserver.close()

      const sent = await alice.json(['send', bob.username, 'the superserver is down'])
      const inbox = await bob.json(['inbox'])
      expect(inbox.messages.map((m: {id: string; text: string}) => [m.id, m.text])).to.deep.equal([[sent.id, 'the superserver is down']])

      const newcomer = await CliUser.create('late', superserver.url)
      const refused = await newcomer.run(['register', newcomer.username])
      expect(refused.code, refused.stderr).to.equal(3)
      expect(refused.stderr.trim().split('\n')[0]).to.match(/superserver/i)
      expect(refused.stderr).not.to.match(/\n\s+at /)
    })
  })
})
