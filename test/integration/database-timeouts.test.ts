import {expect} from 'chai'
import pg from 'pg'
import {to as copyTo} from 'pg-copy-streams'
import type {DataSource} from 'typeorm'

import type {RunningChatServer} from '../../server/main.js'
import {createDataSource, housekeeping, longRunningPoolConfig, migrate} from '../../storage/data-source.js'
import {fakeCiphertext, registerAndLogin, send, uniqueName} from '../helpers/api.js'
import {startTestServer} from '../helpers/cluster.js'
import {eventually} from '../helpers/processes.js'
import {startTcpProxy, type TcpProxy} from '../helpers/tcp-proxy.js'

/**
 * Issue 15, "bounded waits on the database": statement and query timeouts,
 * what they do to the connection they hit, and the work that must not be cut
 * by them (migrations, housekeeping, uploads).
 */

const STATEMENT_MS = 300
const QUERY_MS = 1_000
const CONNECT_MS = 1_000
const timeouts = {statementMs: STATEMENT_MS, queryMs: QUERY_MS, connectMs: CONNECT_MS}

/** Runs `work` and returns what it threw (or undefined) and how long it took. */
async function timed(work: () => Promise<unknown>): Promise<{error: any; ms: number}> {
  const started = Date.now()
  const error = await work().then(
    () => undefined,
    (thrown: unknown) => thrown,
  )
  return {error, ms: Date.now() - started}
}

const backendAlive = async (db: DataSource, pid: number) => (await db.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [pid])).length > 0

describe('bounded waits on the database', function () {
  this.timeout(60_000)
  let proxy: TcpProxy
  /** Direct, without the proxy: to look at pg_stat_activity while the proxied link is frozen. */
  let direct: DataSource
  let db: DataSource

  before(async () => {
    const url = new URL(process.env.DATABASE_URL!)
    proxy = await startTcpProxy({host: url.hostname, port: Number(url.port || 5432)})
    direct = await createDataSource({url: process.env.DATABASE_URL!, poolSize: 2}).initialize()
    db = await createDataSource({url: proxy.url(process.env.DATABASE_URL!), poolSize: 2, timeouts}).initialize()
  })

  afterEach(() => proxy.heal())

  after(async () => {
    await db?.destroy()
    await direct?.destroy()
    await proxy?.close()
  })

  it('ends a query in flight when the link goes silent within the query timeout, and closes its connection instead of pooling it', async () => {
    const runner = db.createQueryRunner()
    const [{pid}] = (await runner.query('SELECT pg_backend_pid() AS pid')) as {pid: number}[]
    proxy.freeze()
    const {error, ms} = await timed(() => runner.query('SELECT 1'))
    await runner.release()
    expect(error?.driverError?.message ?? error?.message).to.equal('Query read timeout')
    expect(ms).to.be.within(QUERY_MS - 50, QUERY_MS + 500)
    proxy.heal()
    // node-pg leaves the timed-out query running on its connection: pooled again (and handed out next: the pool
    // takes the last one back first), it would answer the next query only after that one, or never. It was closed.
    const [{again}] = (await db.query('SELECT pg_backend_pid() AS again')) as {again: number}[]
    expect(again).not.to.equal(pid)
    // Well before the pool would drop it as idle (10 s).
    await eventually(async () => !(await backendAlive(direct, pid)), 'the timed-out connection to be closed', 3_000)
  })

  it('lets Postgres cancel a slow statement at the statement timeout, keeping the connection', async () => {
    const runner = db.createQueryRunner()
    const [{pid}] = (await runner.query('SELECT pg_backend_pid() AS pid')) as {pid: number}[]
    const {error, ms} = await timed(() => runner.query('SELECT pg_sleep(5)'))
    expect(error?.driverError?.code).to.equal('57014')
    expect(ms).to.be.below(QUERY_MS)
    const [{same}] = (await runner.query('SELECT pg_backend_pid() AS same')) as {same: number}[]
    await runner.release()
    expect(same).to.equal(pid)
  })

  it('closes a connection whose server answers that it is read-only (an old primary come back as a standby)', async () => {
    const runner = db.createQueryRunner()
    const [{pid}] = (await runner.query('SELECT pg_backend_pid() AS pid')) as {pid: number}[]
    await runner.query('SET default_transaction_read_only = on')
    const {error} = await timed(() => runner.query('CREATE TABLE fastchat_never_created (x int)'))
    await runner.release()
    expect(error?.driverError?.code).to.equal('25006')
    const [{again}] = (await db.query('SELECT pg_backend_pid() AS again')) as {again: number}[]
    expect(again).not.to.equal(pid)
    await eventually(async () => !(await backendAlive(direct, pid)), 'the read-only connection to be closed', 3_000)
  })

  it('does not cut migrations: the wait for another process holding the migration lock outlasts both timeouts', async () => {
    const holder = new pg.Client({connectionString: process.env.DATABASE_URL})
    await holder.connect()
    try {
      await holder.query('SELECT pg_advisory_lock($1)', [0x66_63_68_74])
      const migrating = timed(() => migrate(db))
      await new Promise((resolve) => setTimeout(resolve, QUERY_MS + 500))
      await holder.query('SELECT pg_advisory_unlock($1)', [0x66_63_68_74])
      const {error, ms} = await migrating
      expect(error).to.equal(undefined)
      expect(ms).to.be.above(QUERY_MS)
    } finally {
      await holder.end()
    }
    // The connection migrate() used is back to the request timeouts.
    const {error} = await timed(() => Promise.all([db.query('SELECT pg_sleep(1)'), db.query('SELECT pg_sleep(1)')]))
    expect(error?.driverError?.code).to.equal('57014')
  })

  it('gives housekeeping statements a minute, server and client side, inside its transaction only', async () => {
    const {error} = await timed(() => housekeeping(db, async (query) => query('SELECT pg_sleep($1)', [(QUERY_MS + 200) / 1000])))
    expect(error).to.equal(undefined)
    const settings = await housekeeping(db, async (query) => query("SELECT current_setting('statement_timeout') AS statement, current_setting('lock_timeout') AS lock"))
    expect(settings).to.deep.equal([{statement: '1min', lock: `${STATEMENT_MS}ms`}])
    const after = (await Promise.all([db.query("SELECT current_setting('statement_timeout') AS s"), db.query("SELECT current_setting('statement_timeout') AS s")])) as {
      s: string
    }[][]
    expect(after.map(([row]) => row!.s)).to.deep.equal([`${STATEMENT_MS}ms`, `${STATEMENT_MS}ms`])
  })

  it('gives the upload pool the same hosts and keepalive but no statement or query timeout', async () => {
    const uploads = new pg.Pool(longRunningPoolConfig(db, {max: 1, waitMs: 5_000}))
    try {
      const [row] = (await uploads.query("SELECT current_setting('statement_timeout') AS s, current_setting('application_name') AS app, pg_sleep(1.2)")).rows
      expect(row).to.include({s: '0', app: 'fastchat'})
      expect((await db.query("SELECT current_setting('idle_in_transaction_session_timeout') AS i"))[0].i).to.equal(`${2 * STATEMENT_MS}ms`)
    } finally {
      await uploads.end()
    }
  })

  it('times a COPY (a download page) itself: a finished one never fails its connection afterwards, one in flight on a silent link ends', async () => {
    // node-pg's read timeout is cleared only through a query's callback, which pg-copy-streams never calls:
    // it would fire QUERY_MS after a COPY that finished long ago, and end whatever the connection did by then.
    const pool = (db.driver as unknown as {master: pg.Pool}).master
    const client = await pool.connect()
    const [{pid}] = (await client.query('SELECT pg_backend_pid() AS pid')).rows as {pid: number}[]
    const copied: Buffer[] = []
    for await (const chunk of client.query(copyTo('COPY (SELECT 1) TO STDOUT'))) copied.push(chunk as Buffer)
    expect(Buffer.concat(copied).toString()).to.equal('1\n')
    const later = await timed(async () => {
      await new Promise((resolve) => setTimeout(resolve, QUERY_MS + 300))
      return client.query('SELECT 1')
    })
    expect(later.error).to.equal(undefined)
    expect(await backendAlive(direct, pid)).to.equal(true)
    // In flight when the link goes silent: ended at the query timeout.
    proxy.freeze()
    const frozen = await timed(async () => {
      for await (const chunk of client.query(copyTo('COPY (SELECT 1) TO STDOUT'))) void chunk
    })
    client.release(true)
    expect(frozen.error).to.be.an('error')
    expect(frozen.ms).to.be.within(QUERY_MS - 50, QUERY_MS + 1_500)
  })

  describe('a chat server whose database link goes silent', () => {
    let server: RunningChatServer | undefined
    after(async () => server?.close())

    it('answers a send with a 503 problem within the query timeout, then serves again once the link is back', async () => {
      server = await startTestServer(undefined, {
        DATABASE_URL: proxy.url(process.env.DATABASE_URL!),
        FASTCHAT_DB_STATEMENT_TIMEOUT_MS: String(STATEMENT_MS),
        FASTCHAT_DB_QUERY_TIMEOUT_MS: String(QUERY_MS),
        FASTCHAT_DB_CONNECT_TIMEOUT_MS: String(CONNECT_MS),
      })
      const alice = await registerAndLogin(server.url, uniqueName('alice'))
      const bob = await registerAndLogin(server.url, uniqueName('bob'), 'bob')
      expect((await send(alice, bob.username, fakeCiphertext('before'), uniqueName('k'))).status).to.equal(201)
      proxy.freeze()
      const started = Date.now()
      const refused = await send(alice, bob.username, fakeCiphertext('silent'), 'silent-link')
      const ms = Date.now() - started
      expect(refused.status, JSON.stringify(refused.body)).to.equal(503)
      expect(refused.body).to.include({code: 'FC_DATABASE_UNAVAILABLE'})
      expect(refused.headers.get('retry-after')).to.equal('1')
      // A query on a pooled connection (QUERY_MS), or a new connection that never gets its answer (CONNECT_MS).
      expect(ms).to.be.below(QUERY_MS + CONNECT_MS + 1_000)
      proxy.heal()
      await eventually(async () => (await send(alice, bob.username, fakeCiphertext('silent'), 'silent-link')).status === 201, 'the server to serve again')
    })
  })
})
