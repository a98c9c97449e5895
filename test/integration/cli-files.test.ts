import {execFile} from 'node:child_process'
import {createHash, randomBytes} from 'node:crypto'
import {once} from 'node:events'
import {copyFile, mkdtemp, readdir, readFile, rm, stat, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {basename, join} from 'node:path'
import {promisify} from 'node:util'

import {expect} from 'chai'
import type {DataSource} from 'typeorm'

import type {RunningChatServer} from '../../server/main.js'
import type {RunningSuperserver} from '../../superserver/main.js'
import {type CliRun, CliUser, spawnCli, startTwoUserCluster, stopTwoUserCluster} from '../helpers/cli.js'
import {startTestServer} from '../helpers/cluster.js'
import {CLI, eventually} from '../helpers/processes.js'

const FIXTURE = new URL('../../fixtures/images/fastchat.png', import.meta.url).pathname
const PNG_MAGIC = Buffer.from([0x89, 0x50, 0x4e, 0x47])

const sha256 = async (path: string) => createHash('sha256').update(await readFile(path)).digest('hex')

/** What a progress bar leaves on stderr: carriage returns, cursor escapes, the bar itself. */
const expectNoProgressBar = (run: CliRun) => {
  expect(run.stderr, run.stderr).not.to.match(/\r|\u001b\[|\[=+-*\]|\[-+\]|\d+%/)
}

// The recipients here have never written to the sender, so `inbox` and `listen` would only list
// the files (hostile-server.test.ts, hole 6): they pass --download, which saves every file.
describe('CLI: end-to-end encrypted files and images', function () {
  // Each CLI run is a new node process (~0.3-0.5 s); a test runs several.
  this.timeout(60_000)

  let db: DataSource
  let superserver: RunningSuperserver
  let servers: RunningChatServer[]
  let alice: CliUser
  let bob: CliUser
  let scratch: string
  let image: string
  let fixtureHash: string

  before(async () => {
    ;({db, superserver, servers, alice, bob} = await startTwoUserCluster())
    scratch = await mkdtemp(join(tmpdir(), 'fastchat-files-'))
    // Sent from a directory of its own: the sender's directories must not travel with the name.
    image = join(scratch, 'fastchat.png')
    await copyFile(FIXTURE, image)
    fixtureHash = await sha256(FIXTURE)
  })

  after(async () => {
    await stopTwoUserCluster({db, superserver, servers})
    await rm(scratch, {recursive: true, force: true})
  })

  /** A fresh recipient, so that each test starts with an empty downloads directory. */
  const newUser = async (prefix: string) => (await CliUser.create(prefix, superserver.url)).register()

  it('sends a PNG between users on different servers; the saved copy is identical and verified; the database never sees it', async () => {
    const [aliceProfile, bobProfile] = [await alice.readJson('profile.json'), await bob.readJson('profile.json')]
    expect(aliceProfile.server).to.not.equal(bobProfile.server)

    const caption = `the view from the old mill ${randomBytes(4).toString('hex')}`
    const sent = await alice.json(['send', bob.username, '--image', image, caption])
    expect(sent).to.include({to: bob.username, name: 'fastchat.png', type: 'image/png', size: (await stat(FIXTURE)).size, caption: true})
    expect(sent.blob).to.match(/^[0-9a-f-]{36}$/)

    const {messages} = await bob.json<{messages: any[]}>(['inbox', '--download'])
    expect(messages).to.have.length(1)
    const [received] = messages
    expect(received).to.deep.include({id: sent.id, from: alice.username, kind: 'image', blob: sent.blob, name: 'fastchat.png', type: 'image/png', caption, keyChanged: false})
    expect(received.size).to.equal(sent.size)
    expect(received.verification.status).to.equal('valid')
    expect(received.path).to.equal(join(bob.home, 'downloads', 'fastchat.png'))
    expect(await sha256(received.path)).to.equal(fixtureHash)
    expect((await stat(received.path)).mode & 0o777).to.equal(0o600)
    expect((await stat(join(bob.home, 'downloads'))).mode & 0o777).to.equal(0o700)

    // The stored blob is ciphertext: no PNG signature, no file name, no caption.
    const chunks: {data: Buffer}[] = await db.query('SELECT data FROM blob_chunks WHERE blob_id = $1 ORDER BY idx', [sent.blob])
    const stored = Buffer.concat(chunks.map((c) => c.data))
    expect(stored.byteLength).to.be.greaterThan(sent.size)
    expect(stored.includes(PNG_MAGIC)).to.equal(false)
    expect(stored.includes(Buffer.from('fastchat.png'))).to.equal(false)
    expect(stored.includes(await readFile(FIXTURE))).to.equal(false)

    // Every text-like column of every table: neither the file name nor the caption is anywhere.
    const columns: {table_name: string; column_name: string; data_type: string}[] = await db.query(
      `SELECT table_name, column_name, data_type FROM information_schema.columns
        WHERE table_schema = 'public' AND data_type IN ('text', 'character varying', 'bytea', 'jsonb', 'json')`,
    )
    expect(columns.map((c) => `${c.table_name}.${c.column_name}`)).to.include('blob_chunks.data')
    const occurrences = async (needle: string | Buffer) => {
      let total = 0
      for (const {table_name: table, column_name: column, data_type: type} of columns) {
        const bytes = Buffer.isBuffer(needle)
        if (bytes && type !== 'bytea') continue
        const match = type === 'bytea' ? (bytes ? `position($1::bytea in "${column}") > 0` : `position(convert_to($1, 'UTF8') in "${column}") > 0`) : `strpos("${column}"::text, $1) > 0`
        total += (await db.query(`SELECT count(*)::int AS n FROM "${table}" WHERE ${match}`, [needle]))[0].n
      }
      return total
    }
    // The search finds what is there...
    expect(await occurrences(bob.username)).to.be.greaterThan(0)
    expect(await occurrences(stored.subarray(0, 64))).to.be.greaterThan(0)
    // ...and not the name, the caption or the image.
    expect(await occurrences('fastchat.png')).to.equal(0)
    expect(await occurrences(caption)).to.equal(0)
    expect(await occurrences(PNG_MAGIC)).to.equal(0)
  })

  it('never overwrites: the same file twice is saved as fastchat.png and fastchat (1).png', async () => {
    const carol = await newUser('carol')
    await alice.json(['send', carol.username, '--image', image])
    await alice.json(['send', carol.username, '--image', image])
    const {messages} = await carol.json<{messages: any[]}>(['inbox', '--download'])
    expect(messages.map((m) => basename(m.path))).to.deep.equal(['fastchat.png', 'fastchat (1).png'])
    expect(messages.map((m) => m.caption)).to.deep.equal([null, null])
    for (const message of messages) expect(await sha256(message.path)).to.equal(fixtureHash)

    // And once more in a later inbox.
    await alice.json(['send', carol.username, '--image', image])
    const later = await carol.json<{messages: any[]}>(['inbox', '--download'])
    expect(basename(later.messages[0].path)).to.equal('fastchat (2).png')
  })

  it('saves into --out DIR with inbox and listen, and history lists files (saving them with --download)', async () => {
    const dave = await newUser('dave')
    const out = join(scratch, 'dave-inbox')
    const notes = join(scratch, 'notes.txt')
    await writeFile(notes, 'plain text, any file will do\n')
    await alice.json(['send', dave.username, '--image', notes, 'some notes'])
    const {messages} = await dave.json<{messages: any[]}>(['inbox', '--download', '--out', out])
    expect(messages[0]).to.deep.include({name: 'notes.txt', type: 'text/plain', path: join(out, 'notes.txt'), caption: 'some notes'})
    expect(await readFile(join(out, 'notes.txt'), 'utf8')).to.equal('plain text, any file will do\n')

    const listenOut = join(scratch, 'dave-listen')
    const listener = spawnCli(['listen', '--json', '--download', '--out', listenOut], dave.env())
    try {
      const sent = await alice.json(['send', dave.username, '--image', image])
      const line = await eventually(async () => listener.stdout().split('\n').find((l) => l.includes(sent.id)), 'listen to save the file')
      const saved = JSON.parse(line)
      expect(saved).to.deep.include({id: sent.id, path: join(listenOut, 'fastchat.png')})
      expect(saved.verification.status).to.equal('valid')
      expect(await sha256(saved.path)).to.equal(fixtureHash)
      const exited = once(listener.child, 'exit')
      listener.child.kill('SIGINT')
      expect((await exited)[0], listener.stderr()).to.equal(0)
    } finally {
      listener.child.kill('SIGKILL')
    }

    const listed = await dave.run(['history', alice.username])
    expect(listed.code, listed.stderr).to.equal(0)
    // Saved by inbox and listen before: history shows their names and where they are, without fetching them again.
    expect(listed.stdout).to.include(`${alice.username} sent notes.txt (29 B, text/plain) → ${join(out, 'notes.txt')}`).and.include('caption: some notes')
    expect(listed.stdout).to.include(`sent fastchat.png (7.8 KiB, image/png) → ${join(listenOut, 'fastchat.png')}`)
    const historyOut = join(scratch, 'dave-history')
    const history = await dave.json(['history', alice.username, '--download', '--out', historyOut])
    expect(history.messages.map((m: any) => [m.name, m.verification.status])).to.deep.equal([
      ['notes.txt', 'valid'],
      ['fastchat.png', 'valid'],
    ])
    expect((await readdir(historyOut)).sort()).to.deep.equal(['fastchat.png', 'notes.txt'])
    // The sender can read their own file back too.
    const own = await alice.json(['history', dave.username, '--download', '--out', join(scratch, 'alice-history')])
    expect(own.messages.map((m: any) => [m.from, m.name, m.verification.status])).to.deep.include([alice.username, 'fastchat.png', 'valid'])
  })

  it('prints one line per file and no progress bar when stderr is piped', async () => {
    const erin = await newUser('erin')
    const sent = await alice.run(['send', erin.username, '--image', image, 'hello there'])
    expect(sent.code, sent.stderr).to.equal(0)
    expect(sent.stdout).to.match(/^Sent fastchat\.png \(7\.8 KiB, image\/png\) to /)
    expectNoProgressBar(sent)

    const inbox = await erin.run(['inbox', '--download'])
    expect(inbox.code, inbox.stderr).to.equal(0)
    expectNoProgressBar(inbox)
    const path = join(erin.home, 'downloads', 'fastchat.png')
    const lines = inbox.stdout.trim().split('\n')
    expect(lines[0]).to.match(new RegExp(`^\\[[^\\]]+\\] ${alice.username} sent fastchat\\.png \\(7\\.8 KiB, image/png\\) → ${path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}  ✔ verified$`))
    expect(lines[1]).to.equal('  caption: hello there')
  })

  it('draws a progress bar when stderr is a terminal', async function () {
    const script = await promisify(execFile)('which', ['script']).catch(() => undefined)
    if (!script) this.skip()
    const frank = await newUser('frank')
    await alice.json(['send', frank.username, '--image', image])
    // util-linux `script` runs the command on a pseudo-terminal.
    const command = `'${process.execPath}' '${CLI}' inbox --download`
    const {stdout} = await promisify(execFile)('script', ['-qec', command, '/dev/null'], {env: {...process.env, ...frank.env()}})
    expect(stdout).to.match(new RegExp(`Downloading from ${alice.username} \\[[=-]+\\]`))
    expect(stdout).to.include('sent fastchat.png').and.include('✔ verified')
  })

  it('reports a damaged file on its own line and carries on with the batch', async () => {
    const grace = await newUser('grace')
    const damaged = await alice.json(['send', grace.username, '--image', image, 'about to be damaged'])
    await alice.json(['send', grace.username, 'after the damaged file'])
    // Flip bytes in the middle of the stored ciphertext.
    const [{data}] = await db.query('SELECT data FROM blob_chunks WHERE blob_id = $1 AND idx = 0', [damaged.blob])
    const flipped = Buffer.from(data as Buffer)
    for (let i = 200; i < 220; i++) flipped[i] = flipped[i]! ^ 0xff
    await db.query('UPDATE blob_chunks SET data = $1 WHERE blob_id = $2 AND idx = 0', [flipped, damaged.blob])

    const inbox = await grace.run(['inbox', '--download'])
    expect(inbox.code, inbox.stderr).to.equal(0)
    expect(inbox.stdout).to.include(`✘ could not decrypt file ${damaged.id}`)
    expect(inbox.stdout).to.match(/after the damaged file {2}✔ verified/)
    expect(await readdir(join(grace.home, 'downloads')).catch(() => [])).to.deep.equal([])
  })

  it('refuses a file over the server limit with one line, and a missing file before any network', async () => {
    const small = await startTestServer(superserver.url, {FASTCHAT_BLOB_LIMIT_BYTES: '4096'})
    try {
      const henry = await CliUser.create('henry', superserver.url)
      await henry.register()
      // Only the small server: with the superserver out of reach, a retry cannot land on a server with a larger limit.
      const profile = await henry.readJson('profile.json')
      await henry.writeJson('profile.json', {...profile, server: small.url, superserver: 'http://127.0.0.1:9'})
      const refused = await henry.run(['send', bob.username, '--image', image])
      expect(refused.code, `${refused.stdout}\n${refused.stderr}`).to.equal(1)
      // The first send also says it pinned bob's key; then one error line, no stack.
      const errors = refused.stderr.trim().split('\n').filter((line) => !line.startsWith('Pinned '))
      expect(errors, refused.stderr).to.have.length(1)
      // And why it did not go directly instead (bob has no peer endpoint open to henry): the one way a larger file could go.
      expect(errors[0]).to.match(
        /^Error: The file is too large for the server: 7\.8 KiB \(the server takes at most 4\.0 KiB once encrypted\)\. It did not go directly either: bob\w* has no peer endpoint open to you \(.*listen --peer.*\)\. Hint: /,
      )

      // A large body may be cut off by the server's early 413 before the answer can be read (EPIPE):
      // then the CLI says what that most likely means, with exit 3 (the cause is not certain).
      const big = join(scratch, 'big.bin')
      await writeFile(big, randomBytes(3 * 1024 * 1024))
      const bigRefused = await henry.run(['send', bob.username, '--image', big])
      expect(bigRefused.code, `${bigRefused.stdout}\n${bigRefused.stderr}`).to.be.oneOf([1, 3])
      expect(bigRefused.stderr.trim().split('\n'), bigRefused.stderr).to.have.length(1)
      expect(bigRefused.stderr).to.match(/^Error: The (file is too large for the server|server closed the connection while receiving the file \(3\.0 MiB\): it may be too large)/)
    } finally {
      await small.close()
    }

    const missing = await alice.run(['send', bob.username, '--image', join(scratch, 'nope.png')])
    expect(missing.code).to.equal(1)
    expect(missing.stderr).to.match(/^Error: Cannot read .*nope\.png: ENOENT/)
    const directory = await alice.run(['send', bob.username, '--image', scratch])
    expect(directory.code).to.equal(1)
    expect(directory.stderr).to.include('is not a file')
    const nothing = await alice.run(['send', bob.username])
    expect(nothing.code).to.equal(1)
    expect(nothing.stderr).to.include('--image')
  })
})
