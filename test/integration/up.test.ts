import {execFile} from 'node:child_process'
import {readFile, writeFile, mkdtemp, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {promisify} from 'node:util'

import {expect} from 'chai'
import pg from 'pg'

import {http} from '../helpers/http.js'
import {eventually, isAlive, startCli, type Started} from '../helpers/processes.js'
import {freshDatabase} from '../helpers/database.js'

const run = promisify(execFile)

/** Pids of every process whose parent is `pid`, recursively. */
async function descendants(pid: number): Promise<number[]> {
  const {stdout} = await run('ps', ['-e', '-o', 'pid=,ppid='])
  const pairs = stdout.trim().split('\n').map((line) => line.trim().split(/\s+/).map(Number) as [number, number])
  const found: number[] = []
  const walk = (parent: number) => {
    for (const [child, ppid] of pairs) if (ppid === parent) (found.push(child), walk(child))
  }
  walk(pid)
  return found
}

async function directChildren(pid: number): Promise<number[]> {
  const {stdout} = await run('ps', ['-o', 'pid=', '--ppid', String(pid)])
  return stdout.trim().split('\n').filter(Boolean).map(Number)
}

async function assignTwice(up: Started): Promise<[string, string, string]> {
  const urls: string[] = []
  for (let i = 0; i < 3; i++) urls.push((await http('GET', `${up.url}/v1/assign`)).body.server)
  return urls as [string, string, string]
}

describe('fastchat up', function () {
  this.timeout(60_000)

  it('runs a superserver and two chat servers on DATABASE_URL and stops them all on Ctrl-C', async () => {
    const up = await startCli(['up', '--port', '0', '--json'], {DATABASE_URL: await freshDatabase('up'), FASTCHAT_DATA_DIR: await mkdtemp(join(tmpdir(), 'fc-up-'))})
    const [a, b, c] = await assignTwice(up)
    expect(a).to.not.equal(b)
    expect(c).to.equal(a)
    const children = await descendants(up.child.pid!)
    expect(children).to.have.length(3)

    expect(await up.stop('SIGINT')).to.equal(0)
    for (const pid of children) expect(isAlive(pid), `process ${pid} left behind`).to.equal(false)
  })

  describe('with the embedded database', () => {
    let dataDir: string
    before(async () => {
      dataDir = await mkdtemp(join(tmpdir(), 'fc-embedded-'))
    })
    after(() => rm(dataDir, {recursive: true, force: true}))
    const env = () => ({DATABASE_URL: '', FASTCHAT_DATA_DIR: dataDir})

    it('starts with nothing installed, keeps its data across restarts, and cleans up', async () => {
      const first = await startCli(['up', '--port', '0', '--json'], env())
      const [a, b] = await assignTwice(first)
      expect(a).to.not.equal(b)
      const {databaseUrl} = JSON.parse(await readFile(join(dataDir, 'cluster.json'), 'utf8'))
      const client = new pg.Client(databaseUrl)
      await client.connect()
      await client.query(`INSERT INTO users (username, username_key, password_hash, public_key, fingerprint) VALUES ('keep', 'keep', 'x', 'x', 'x')`)
      await client.end()
      const children = await descendants(first.child.pid!)
      expect(children.length).to.be.greaterThanOrEqual(4) // postgres, superserver, 2 servers

      expect(await first.stop('SIGINT')).to.equal(0)
      for (const pid of children) expect(isAlive(pid), `process ${pid} left behind`).to.equal(false)

      const second = await startCli(['up', '--port', '0', '--json'], env())
      const {databaseUrl: again} = JSON.parse(await readFile(join(dataDir, 'cluster.json'), 'utf8'))
      const reader = new pg.Client(again)
      await reader.connect()
      const {rows} = await reader.query(`SELECT username FROM users`)
      await reader.end()
      expect(rows).to.deep.equal([{username: 'keep'}])
      expect(await second.stop('SIGINT')).to.equal(0)
    })

    it('recovers after being killed with SIGKILL (stale postmaster.pid, orphaned postgres)', async () => {
      const killed = await startCli(['up', '--port', '0', '--json'], env())
      const children = await directChildren(killed.child.pid!)
      expect(await killed.stop('SIGKILL')).to.equal('SIGKILL')
      // The chat servers and postgres outlive their parent; the pid file stays.
      expect((await readFile(join(dataDir, 'postgres', 'postmaster.pid'), 'utf8')).length).to.be.greaterThan(0)

      // The chat servers and the superserver notice their parent is gone and exit.
      const postgres = (await readFile(join(dataDir, 'postgres', 'postmaster.pid'), 'utf8')).split('\n')[0]
      for (const pid of children.filter((p) => String(p) !== postgres)) {
        await eventually(async () => !isAlive(pid), `orphan ${pid} to exit`)
      }

      const next = await startCli(['up', '--port', '0', '--json'], env())
      const [a, b] = await assignTwice(next)
      expect(a).to.not.equal(b)
      expect(isAlive(Number(postgres)), 'the orphaned postgres was stopped').to.equal(false)
      expect(await next.stop('SIGINT')).to.equal(0)
    })

    it('refuses to share its database with another running up', async () => {
      const first = await startCli(['up', '--port', '0', '--json'], env())
      const error = await startCli(['up', '--port', '0', '--json'], env()).catch((e: Error) => e)
      expect(String(error)).to.match(/in use by process/)
      expect(await first.stop('SIGINT')).to.equal(0)
    })
  })

  it('lets a chat server join the running local cluster with no configuration', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'fc-join-'))
    const up = await startCli(['up', '--port', '0', '--servers', '1', '--json'], {DATABASE_URL: await freshDatabase('join'), FASTCHAT_DATA_DIR: dataDir})
    const joined = await startCli(['server', '--port', '0'], {DATABASE_URL: '', FASTCHAT_CLUSTER_SECRET: '', FASTCHAT_DATA_DIR: dataDir})
    // The registry answers the cluster secret only: `up` published the one it made.
    const {clusterSecret} = JSON.parse(await readFile(join(dataDir, 'cluster.json'), 'utf8')) as {clusterSecret: string}
    const listed = async () =>
      (await http('GET', `${up.url}/v1/servers`, {headers: {authorization: `Bearer ${clusterSecret}`}})).body.servers.map((s: {url: string}) => s.url)
    const deadline = Date.now() + 10_000
    while (!(await listed()).includes(joined.url) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100))
    expect(await listed()).to.include(joined.url)
    expect(await joined.stop('SIGTERM')).to.equal(0)
    expect(await up.stop('SIGINT')).to.equal(0)
    await writeFile(join(dataDir, 'done'), '')
  })
})
