import {lstat, mkdir, mkdtemp, readFile, readlink, rm, stat} from 'node:fs/promises'
import {tmpdir, userInfo} from 'node:os'
import {join} from 'node:path'

import {expect} from 'chai'
import pg from 'pg'

import {freshDatabase} from '../helpers/database.js'
import {http} from '../helpers/http.js'
import {eventually, startCli} from '../helpers/processes.js'

/** A registry row of a chat server that stopped an hour ago without deregistering: the next superserver evicts it, with a warning. */
async function staleServer(databaseUrl: string): Promise<void> {
  const client = new pg.Client(databaseUrl)
  await client.connect()
  await client.query(`INSERT INTO chat_servers (id, url, last_seen) VALUES (gen_random_uuid(), 'http://127.0.0.1:1', now() - interval '1 hour')`)
  await client.end()
}

describe('fastchat up: where its data and its logs go', function () {
  this.timeout(60_000)
  const made: string[] = []
  const temp = async (prefix: string) => {
    const dir = await mkdtemp(join(tmpdir(), prefix))
    made.push(dir)
    return dir
  }
  after(async () => {
    for (const dir of made.splice(0)) await rm(dir, {recursive: true, force: true})
  })

  it('keeps its data in $HOME/.local/share/fastchat, for root too, and says where its log is', async () => {
    const home = await temp('fc-home-')
    const env = {HOME: home, FASTCHAT_DATA_DIR: '', XDG_DATA_HOME: '', DATABASE_URL: await freshDatabase('home', {migrated: true})}
    const up = await startCli(['up', '--port', '0', '--json'], env)
    const dataDir = join(home, '.local', 'share', 'fastchat')
    expect(JSON.parse(up.output().trim().split('\n').at(-1)!).logs).to.equal(join(dataDir, 'up.log'))
    expect(JSON.parse(await readFile(join(dataDir, 'cluster.json'), 'utf8')).superserverUrl).to.equal(up.url)
    expect(await up.stop('SIGINT')).to.equal(0)
  })

  it('prints human text only; the JSON logs of its processes go to up.log, and to the terminal with --verbose', async () => {
    const dataDir = await temp('fc-logs-')
    const databaseUrl = await freshDatabase('logs', {migrated: true})
    // Short heartbeats: the superserver sweeps the registry (and warns of the stale server) at once.
    // LOG_LEVEL unset (the suite sets it to silent): up's own default.
    const env = {FASTCHAT_DATA_DIR: dataDir, DATABASE_URL: databaseUrl, FASTCHAT_HEARTBEAT_MS: '100', LOG_LEVEL: ''}
    const logFile = join(dataDir, 'up.log')
    const evicted = /\[superserver\] \{.*"msg":"chat server evicted after missed heartbeats"/

    await staleServer(databaseUrl)
    const quiet = await startCli(['up', '--port', '0', '--servers', '1'], env)
    await eventually(async () => evicted.test(await readFile(logFile, 'utf8')), 'the eviction warning in up.log')
    expect(quiet.output()).to.include(`  logs         ${logFile}\n`)
    expect(await quiet.stop('SIGINT')).to.equal(0)
    const lines = quiet.output().trim().split('\n')
    expect(lines.filter((line) => /[{}]/.test(line)), quiet.output()).to.deep.equal([])
    expect(lines[0]).to.match(/^FastChat local cluster is up \(\d+ ms\)$/)
    expect(lines.slice(-2)).to.deep.equal(['Stopping...', 'Stopped.'])

    await staleServer(databaseUrl)
    const verbose = await startCli(['up', '--port', '0', '--servers', '1', '--verbose'], env)
    await eventually(async () => evicted.test(verbose.output()), 'the eviction warning on the terminal')
    expect(await verbose.stop('SIGINT')).to.equal(0)
    // Appended: both runs are in the file.
    expect((await readFile(logFile, 'utf8')).match(/^\[up\] starting/gm)).to.have.length(2)
  })

  describe('as root', () => {
    before(function () {
      if (userInfo().uid !== 0) this.skip()
    })

    it('runs the embedded PostgreSQL (as the postgres user) for a data directory inside a folder closed to others', async () => {
      // Like /root: 0700 and owned by root, which the postgres user cannot enter.
      const home = await temp('fc-root-home-')
      expect((await stat(home)).mode & 0o777).to.equal(0o700)
      const dataDir = join(home, 'data', 'fastchat')
      await mkdir(dataDir, {recursive: true, mode: 0o700})
      const env = {FASTCHAT_DATA_DIR: dataDir, DATABASE_URL: ''}
      const up = await startCli(['up', '--port', '0', '--servers', '1'], env)
      let cluster: string | undefined
      try {
        expect((await http('GET', `${up.url}/v1/assign`)).status).to.equal(200)
        expect((await lstat(join(dataDir, 'postgres'))).isSymbolicLink()).to.equal(true)
        cluster = await readlink(join(dataDir, 'postgres'))
        expect(cluster).to.match(/^\/var\/lib\/fastchat-postgres\/[0-9a-f]{16}$/)
        expect(up.output()).to.include(`  postgres     ${cluster} (${dataDir}/postgres links there: the postgres user cannot enter ${home})\n`)
        expect((await stat(cluster)).uid).to.not.equal(0)
        // Nothing of the user's folders was opened up.
        expect((await stat(home)).mode & 0o777).to.equal(0o700)
        expect(await up.stop('SIGINT')).to.equal(0)

        // The next start finds the same cluster through the link.
        const again = await startCli(['up', '--port', '0', '--servers', '1'], env)
        expect(again.output()).to.include(`  postgres     ${cluster} `)
        expect(await again.stop('SIGINT')).to.equal(0)
      } finally {
        await up.stop('SIGINT')
        if (cluster) await rm(cluster, {recursive: true, force: true})
      }
    })
  })
})
