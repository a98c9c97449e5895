import {mkdtemp, readdir, readFile, rm, stat, symlink, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {PassThrough} from 'node:stream'

import {expect} from 'chai'

import {formatSize, MAX_NAME_CHARS, numberedName, prepareDownloadDir, sanitizeFileName, saveUnique} from '../../client/downloads.js'
import {noProgress, progressFor, transferBar} from '../../commands/_lib/progress.js'

describe('saving received files', () => {
  let dir: string
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fastchat-downloads-'))
  })
  afterEach(async () => {
    await rm(dir, {recursive: true, force: true})
  })

  it('reduces a sender-chosen name to a safe base name', () => {
    expect(sanitizeFileName('photo.png')).to.equal('photo.png')
    expect(sanitizeFileName('../../.ssh/authorized_keys')).to.equal('authorized_keys')
    expect(sanitizeFileName('/etc/passwd')).to.equal('passwd')
    expect(sanitizeFileName('C:\\Users\\bob\\evil.exe')).to.equal('evil.exe')
    expect(sanitizeFileName('.bashrc')).to.equal('bashrc')
    expect(sanitizeFileName('...hidden')).to.equal('hidden')
    expect(sanitizeFileName(' . .profile')).to.equal('profile')
    expect(sanitizeFileName('..')).to.equal('file')
    expect(sanitizeFileName('.')).to.equal('file')
    expect(sanitizeFileName('')).to.equal('file')
    expect(sanitizeFileName('dir/')).to.equal('file')
    expect(sanitizeFileName('a\u0000b\nc\u001b[31m.txt')).to.equal('abc[31m.txt')
    // Right-to-left override: "photo\u202Egnp.exe" would show as "photoexe.png".
    expect(sanitizeFileName('photo\u202egnp.exe')).to.equal('photognp.exe')
    expect(sanitizeFileName('zero\u200bwidth.txt')).to.equal('zerowidth.txt')
    expect(sanitizeFileName('Fotoğraf 写真 🎉.jpg')).to.equal('Fotoğraf 写真 🎉.jpg')
  })

  it('cuts long names to 200 characters (and bytes), keeping the extension', () => {
    const long = sanitizeFileName(`${'a'.repeat(500)}.png`)
    expect(long).to.have.length(MAX_NAME_CHARS)
    expect(long.endsWith('.png')).to.equal(true)
    const wide = sanitizeFileName(`${'写'.repeat(300)}.jpeg`)
    expect(Buffer.byteLength(wide)).to.be.at.most(200)
    expect(wide.endsWith('.jpeg')).to.equal(true)
    expect([...sanitizeFileName('😀'.repeat(300))].length).to.be.at.most(MAX_NAME_CHARS)
    expect(sanitizeFileName(`x.${'y'.repeat(300)}`)).to.have.length(MAX_NAME_CHARS)
  })

  it('numbers names before the extension', () => {
    expect(numberedName('photo.png', 0)).to.equal('photo.png')
    expect(numberedName('photo.png', 1)).to.equal('photo (1).png')
    expect(numberedName('archive.tar.gz', 2)).to.equal('archive.tar (2).gz')
    expect(numberedName('README', 3)).to.equal('README (3)')
  })

  it('never overwrites: name.png, then name (1).png, name (2).png; each file 0600', async () => {
    const paths = [
      await saveUnique(dir, 'name.png', Buffer.from('one')),
      await saveUnique(dir, 'name.png', Buffer.from('two')),
      await saveUnique(dir, '../name.png', Buffer.from('three')),
    ]
    expect(paths).to.deep.equal([join(dir, 'name.png'), join(dir, 'name (1).png'), join(dir, 'name (2).png')])
    expect(await Promise.all(paths.map((p) => readFile(p, 'utf8')))).to.deep.equal(['one', 'two', 'three'])
    for (const path of paths) expect((await stat(path)).mode & 0o777).to.equal(0o600)
    expect((await readdir(dir)).sort()).to.deep.equal(['name (1).png', 'name (2).png', 'name.png'])
  })

  it('does not follow a symlink planted under the name', async () => {
    const target = join(dir, 'target.txt')
    await writeFile(target, 'untouched')
    await symlink(target, join(dir, 'planted.txt'))
    const path = await saveUnique(dir, 'planted.txt', Buffer.from('payload'))
    expect(path).to.equal(join(dir, 'planted (1).txt'))
    expect(await readFile(target, 'utf8')).to.equal('untouched')
  })

  it('saves many copies of one name at once without losing any', async () => {
    const paths = await Promise.all(Array.from({length: 8}, (_, i) => saveUnique(dir, 'same.bin', Buffer.from(String(i)))))
    expect(new Set(paths).size).to.equal(8)
  })

  it('creates the profile downloads directory 0700, and an --out directory', async () => {
    const downloads = await prepareDownloadDir(join(dir, 'profile'))
    expect(downloads).to.equal(join(dir, 'profile', 'downloads'))
    expect((await stat(downloads)).mode & 0o777).to.equal(0o700)
    const out = await prepareDownloadDir(join(dir, 'profile'), join(dir, 'elsewhere', 'deep'))
    expect((await stat(out)).isDirectory()).to.equal(true)
    await writeFile(join(dir, 'a-file'), '')
    let failure: unknown
    await prepareDownloadDir(dir, join(dir, 'a-file')).catch((error: unknown) => (failure = error))
    expect(String(failure)).to.match(/Cannot use .*a-file/)
  })

  it('formats sizes in binary units', () => {
    expect(formatSize(0)).to.equal('0 B')
    expect(formatSize(1023)).to.equal('1023 B')
    expect(formatSize(12_595)).to.equal('12.3 KiB')
    expect(formatSize(5 * 1024 * 1024)).to.equal('5.0 MiB')
  })
})

describe('progress bars', () => {
  /** A stream that says it is (or is not) a terminal and records what is drawn on it. */
  const fakeStream = (isTTY: boolean) => {
    const stream = new PassThrough() as PassThrough & {isTTY: boolean; columns: number; output: string}
    stream.isTTY = isTTY
    stream.columns = 100
    stream.output = ''
    stream.on('data', (chunk: Buffer) => (stream.output += chunk.toString()))
    return stream
  }

  it('are off for --json and for a stream that is not a terminal', () => {
    expect(progressFor({json: true, stream: fakeStream(true) as unknown as NodeJS.WriteStream})).to.equal(noProgress)
    expect(progressFor({json: false, stream: fakeStream(false) as unknown as NodeJS.WriteStream})).to.equal(noProgress)
    expect(progressFor({json: false, stream: fakeStream(true) as unknown as NodeJS.WriteStream})).not.to.equal(noProgress)
  })

  it('draw bytes transferred on a terminal, then clear the line', async () => {
    const stream = fakeStream(true)
    const bar = transferBar(stream, 'Uploading photo\u001b[2J.png', 4096)
    bar.advance(1024)
    bar.advance(3072)
    bar.stop()
    bar.stop()
    await new Promise((resolve) => setImmediate(resolve))
    expect(stream.output).to.include('Uploading photo\\x1b[2J.png [')
    expect(stream.output).to.include('100% 4.0 KiB/4.0 KiB')
    expect(stream.output).not.to.include('\u001b[2J')
  })
})
