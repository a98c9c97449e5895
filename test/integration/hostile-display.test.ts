import {once} from 'node:events'
import {copyFile, mkdtemp, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {expect} from 'chai'

import type {RunningChatServer} from '../../server/main.js'
import type {RunningSuperserver} from '../../superserver/main.js'
import {type CliRun, CliUser, removeCliHomes, spawnCli} from '../helpers/cli.js'
import {startTestServer, startTestSuperserver} from '../helpers/cluster.js'
import {http} from '../helpers/http.js'
import {MaliciousProxy} from '../helpers/malicious-proxy.js'
import {eventually} from '../helpers/processes.js'

/**
 * Issue 12, holes 2 and 3: what reaches the terminal. A contact writes text,
 * captions and file names that imitate another person's verified message; an
 * operator (a proxy in front of a real chat server) puts terminal escapes in
 * every field it answers with. Bob talks only through the proxy.
 */

const FIXTURE = new URL('../../fixtures/images/fastchat.png', import.meta.url).pathname

/** Sets the window title. */
const OSC_TITLE = '\u001b]0;pwned\u0007'
/** Writes "rm -rf ~" to the clipboard. */
const OSC_CLIPBOARD = '\u001b]52;c;cm0gLXJmIH4=\u0007'
/** Erases the line, moves up one: rewrites what was printed before. */
const CSI_ERASE = '\u001b[2K\u001b[1A'
const ESCAPES = OSC_TITLE + OSC_CLIPBOARD + CSI_ERASE
/** A line that looks like carol's verified message. */
const FORGED = '[2026-12-01T17:49:00.000Z] carol: my new number is 555-0100  ✔ verified'

/** C0 controls but the newline, DEL, C1 controls. */
const CONTROL = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/
/** Invisible and bidirectional formatting characters. */
const INVISIBLE = /[\u200b\u200e\u200f\u2028\u2029\u202a-\u202e\u2060\u2066-\u2069\ufeff]/

const expectClean = (run: {stdout: string; stderr: string}) => {
  for (const [name, text] of [
    ['stdout', run.stdout],
    ['stderr', run.stderr],
  ] as const) {
    const bad = CONTROL.exec(text) ?? INVISIBLE.exec(text)
    expect(bad?.[0], `${name} holds ${JSON.stringify(bad?.[0])}: ${JSON.stringify(text)}`).to.equal(undefined)
  }
}

/** stderr lines that are not the first-use notes of pinning a key. */
const errorLines = (run: CliRun) =>
  run.stderr
    .split('\n')
    .filter(Boolean)
    .filter((line) => !line.startsWith('Pinned '))

describe('CLI: hostile text and a hostile server cannot drive the terminal (issue 12, holes 2 and 3)', function () {
  this.timeout(90_000)

  let superserver: RunningSuperserver
  let server: RunningChatServer
  let proxy: MaliciousProxy
  /** An honest contact, on the real cluster. */
  let alice: CliUser
  /** Behind the malicious operator. */
  let bob: CliUser
  let scratch: string

  before(async () => {
    superserver = await startTestSuperserver()
    server = await startTestServer(superserver.url)
    // Assigned once healthy (the public route: the registry itself may need the cluster secret).
    await eventually(async () => (await http<{server?: string}>('GET', `${superserver.url}/v1/assign`)).body.server === server.url, 'the chat server to be assigned')
    proxy = await MaliciousProxy.start(server.url)
    alice = await (await CliUser.create('alice', superserver.url)).register()
    bob = await (await CliUser.create('bob', proxy.url)).register()
    scratch = await mkdtemp(join(tmpdir(), 'fastchat-hostile-'))
    // Pin each other's keys, and start every test from an empty inbox.
    await alice.json(['send', bob.username, 'hello'])
    await bob.json(['send', alice.username, 'hello'])
    await drain(alice)
  })

  afterEach(() => proxy?.reset())

  after(async () => {
    await proxy?.close()
    await server?.close()
    await superserver?.close()
    await removeCliHomes()
    if (scratch) await rm(scratch, {recursive: true, force: true})
  })

  async function drain(user: CliUser): Promise<void> {
    const run = await user.run(['inbox'])
    if (run.code !== 0) throw new Error(`inbox exited ${run.code}: ${run.stderr}`)
  }

  /** Sends `texts` from alice to bob; their ids and server times. */
  async function fromAlice(...texts: string[]): Promise<{id: string; sentAt: string}[]> {
    const sent: {id: string; sentAt: string}[] = []
    for (const text of texts) sent.push(await alice.json(['send', bob.username, text]))
    return sent
  }

  it("hole 2: a contact's text, caption and file name cannot add a line that looks like another person's verified message", async () => {
    await drain(bob)
    const file = join(scratch, `photo\n${FORGED}${ESCAPES}.png`)
    await copyFile(FIXTURE, file)
    const sent = [
      ...(await fromAlice(`ok\n${FORGED}`, `fine\r${FORGED}`, `tab\t${FORGED}\u2028${FORGED}`)),
      await alice.json(['send', bob.username, '--image', file, `see the photo\n${FORGED}`]),
    ]

    const run = await bob.run(['inbox'])
    expect(run.code, run.stderr).to.equal(0)
    expectClean(run)
    // The only lines that start like a message header are the four real ones, in order.
    const headers = run.stdout.split('\n').filter((line) => line.startsWith('['))
    expect(headers, run.stdout).to.have.length(sent.length)
    headers.forEach((header, i) => expect(header.startsWith(`[${sent[i]!.sentAt}] ${alice.username}`), header).to.equal(true))
    // The forged words are still there to read, inside the messages that carried them.
    expect(run.stdout.split('\n').filter((line) => line.includes('555-0100')).length).to.be.at.least(5)
    expect(run.stdout).to.match(/\n {2}\| \[2026-12-01T17:49:00\.000Z\] carol: my new number/)
  })

  it("hole 3: the sender's confirmation of `send --image` shows a file name's escapes escaped, on one line", async () => {
    const file = join(scratch, `report${ESCAPES}\n${FORGED}.png`)
    await copyFile(FIXTURE, file)
    const run = await alice.run(['send', bob.username, '--image', file])
    expect(run.code, run.stderr).to.equal(0)
    expectClean(run)
    expect(run.stdout.trim().split('\n'), run.stdout).to.have.length(1)
    expect(run.stdout).to.include('report\\x1b]0;pwned\\x07\\x1b]52;c;cm0gLXJmIH4=\\x07\\x1b[2K\\x1b[1A\\n[2026-12-01T17:49:00.000Z] carol')
    await drain(bob)
  })

  it('hole 3: message events with escapes in sentAt, from or id are skipped, one clean notice each; the rest of the page is shown and the cursor moves on', async () => {
    await drain(bob)
    const [badTime, badFrom, badId] = await fromAlice('field sentAt', 'field from', 'field id', 'field good')
    proxy.rewrite('GET', /^\/v1\/events$/, (body) => ({
      ...body,
      events: body.events.map((event: Record<string, string>) => {
        if (event.id === badTime!.id) return {...event, sentAt: `${event.sentAt}${OSC_TITLE}`}
        if (event.id === badFrom!.id) return {...event, from: `${event.from}${OSC_CLIPBOARD}`}
        if (event.id === badId!.id) return {...event, id: `${event.id}${CSI_ERASE}`}
        return event
      }),
    }))

    const run = await bob.run(['inbox'])
    expect(run.code, run.stderr).to.equal(0)
    expectClean(run)
    expect(run.stdout).to.include('field good')
    expect(run.stdout).not.to.match(/field (sentAt|from|id)/)
    const notices = errorLines(run)
    expect(notices, run.stderr).to.have.length(3)
    for (const [i, field] of ['sentAt', 'from', 'id'].entries()) {
      expect(notices[i]).to.match(new RegExp(`^Notice: skipped event \\d+: .*GET /v1/events.*\\b${field}\\b`))
    }

    // Not wedged: the cursor went past them.
    const again = await bob.run(['inbox'])
    expect(again.code, again.stderr).to.equal(0)
    expect(again.stdout).to.include('No new messages.')
    expect(again.stderr).to.equal('')
  })

  it('hole 3: a page of events whose cursor is not a number is refused: exit 3, FC_BAD_RESPONSE, one clean line', async () => {
    await fromAlice('behind a broken page')
    proxy.rewrite('GET', /^\/v1\/events$/, (body) => ({...body, next: `${body.next}${OSC_TITLE}`}))
    const run = await bob.run(['inbox'])
    expect(run.code, run.stderr).to.equal(3)
    expectClean(run)
    expect(run.stdout).to.equal('')
    const lines = errorLines(run)
    expect(lines, run.stderr).to.have.length(1)
    expect(lines[0]).to.match(/^Error: .*GET \/v1\/events.*\bnext\b/)
    const json = await bob.run(['inbox', '--json'])
    expect(json.code).to.equal(3)
    expect(JSON.parse(json.stdout).error.code).to.equal('FC_BAD_RESPONSE')
    proxy.reset()
    await drain(bob)
  })

  it('hole 3: history skips messages with escapes in sentAt, from or id, one clean notice each', async () => {
    await fromAlice('history one', 'history two', 'history three', 'history four')
    proxy.rewrite('GET', /^\/v1\/conversations\//, (body) => {
      // Newest first: the three latest are made bad.
      const [a, b, c, ...rest] = body.messages
      return {...body, messages: [{...a, sentAt: `${a.sentAt}${CSI_ERASE}`}, {...b, from: `${b.from}${OSC_TITLE}`}, {...c, id: `${c.id}${OSC_CLIPBOARD}`}, ...rest]}
    })
    const run = await bob.run(['history', alice.username])
    expect(run.code, run.stderr).to.equal(0)
    expectClean(run)
    expect(run.stdout).to.include('history one')
    expect(run.stdout).not.to.match(/history (two|three|four)/)
    const notices = errorLines(run)
    expect(notices, run.stderr).to.have.length(3)
    for (const notice of notices) expect(notice).to.match(/^Notice: skipped a message: .*GET \/v1\/conversations\/:peer.*\b(sentAt|from|id)\b/)
    await drain(bob)
  })

  it('hole 3: listen skips a malformed event with a clean notice and goes on', async () => {
    await drain(bob)
    const [bad] = await fromAlice('listen bad', 'listen good')
    proxy.rewrite('GET', /^\/v1\/events$/, (body) => ({
      ...body,
      events: body.events.map((event: Record<string, string>) => (event.id === bad!.id ? {...event, sentAt: OSC_TITLE} : event)),
    }))
    const listener = spawnCli(['listen'], bob.env())
    try {
      await eventually(async () => listener.stdout().includes('listen good') && listener.stderr().includes('Notice: skipped event'), 'listen to show the good message')
      const exited = once(listener.child, 'exit')
      listener.child.kill('SIGINT')
      const [code] = await exited
      expect(code, listener.stderr()).to.equal(0)
      expectClean({stdout: listener.stdout(), stderr: listener.stderr()})
      expect(listener.stdout()).not.to.include('listen bad')
    } finally {
      listener.child.kill('SIGKILL')
    }
  })

  it('hole 3: group show, group list and group events refuse escapes in names, usernames, fingerprints and times', async () => {
    const created = await bob.json(['group', 'create', 'hostile', '--member', alice.username])
    await alice.json(['group', 'join', created.id])
    const detail = new RegExp(`^/v1/groups/${created.id}$`)
    const cases: [string, (group: any) => unknown][] = [
      ['name', (group) => ({...group, name: `${group.name}${OSC_TITLE}`})],
      ['keyedBy', (group) => ({...group, keyedBy: `${group.keyedBy}${CSI_ERASE}`})],
      ['members[0].username', (group) => ({...group, members: [{...group.members[0], username: `${group.members[0].username}${CSI_ERASE}`}, ...group.members.slice(1)]})],
      ['members[1].fingerprint', (group) => ({...group, members: [group.members[0], {...group.members[1], fingerprint: `${group.members[1].fingerprint}${OSC_CLIPBOARD}`}]})],
      ['members[0].joinedAt', (group) => ({...group, members: [{...group.members[0], joinedAt: `${group.members[0].joinedAt}${OSC_TITLE}`}, ...group.members.slice(1)]})],
    ]
    for (const [field, rewrite] of cases) {
      proxy.reset()
      proxy.rewrite('GET', detail, rewrite)
      const run = await bob.run(['group', 'show', created.id])
      expect(run.code, `${field}: ${run.stdout}${run.stderr}`).to.equal(3)
      expectClean(run)
      const lines = errorLines(run)
      expect(lines, run.stderr).to.have.length(1)
      expect(lines[0]).to.match(/^Error: .*GET \/v1\/groups\/:id/)
      expect(lines[0]).to.include(field)
    }

    proxy.reset()
    proxy.rewrite('GET', /^\/v1\/groups$/, (body) => ({groups: body.groups.map((g: any) => ({...g, name: `${g.name}${OSC_TITLE}`}))}))
    const list = await bob.run(['group', 'list'])
    expect(list.code, list.stderr).to.equal(3)
    expectClean(list)
    expect(errorLines(list)[0]).to.match(/^Error: .*GET \/v1\/groups\b.*groups\[0\]\.name/)

    proxy.reset()
    proxy.rewrite('GET', /^\/v1\/events$/, (body) => ({
      ...body,
      events: body.events.map((event: any) => (event.type === 'group.created' ? {...event, name: `${event.name}${OSC_CLIPBOARD}`, by: `${event.by}\n${FORGED}`} : event)),
    }))
    const inbox = await bob.run(['inbox'])
    expect(inbox.code, inbox.stderr).to.equal(0)
    expectClean(inbox)
    expect(inbox.stdout).not.to.include('created')
    expect(errorLines(inbox).filter((line) => line.startsWith('Notice: skipped event'))).to.have.length(1)
  })

  it('hole 3: problem details with escapes and forged lines are shown escaped, on one line', async () => {
    proxy.answer('POST', /^\/v1\/messages$/, () => ({
      status: 409,
      contentType: 'application/problem+json',
      json: {type: 'about:blank', title: `Conflict${OSC_TITLE}`, status: 409, detail: `nope${OSC_CLIPBOARD}${CSI_ERASE}\n${FORGED}`, code: 'FC_IDEMPOTENCY_KEY_REUSED'},
    }))
    const detail = await bob.run(['send', alice.username, 'hello?'])
    expect(detail.code, detail.stderr).to.equal(1)
    expectClean(detail)
    const lines = errorLines(detail)
    expect(lines, detail.stderr).to.have.length(1)
    expect(lines[0]).to.match(/^Error: nope\\x1b\]52;c;cm0gLXJmIH4=\\x07\\x1b\[2K\\x1b\[1A\\n\[2026-12-01T17:49:00\.000Z\] carol/)

    // Only a title, and a `code` that is not one: the title is shown escaped, the code is not believed.
    proxy.reset()
    proxy.answer('POST', /^\/v1\/messages$/, () => ({status: 403, json: {title: `Forbidden${OSC_TITLE}`, status: 403, code: `FC_X${CSI_ERASE}`}}))
    const title = await bob.run(['send', alice.username, 'hello?'])
    expect(title.code, title.stderr).to.equal(1)
    expectClean(title)
    expect(errorLines(title)).to.deep.equal(['Error: Forbidden\\x1b]0;pwned\\x07'])
    const json = await bob.run(['send', alice.username, 'hello?', '--json'])
    expect(JSON.parse(json.stdout).error.code).to.equal('HTTP_403')
  })

  it("hole 3: a send answer whose sentAt or id is not the API's is refused (exit 3), not echoed", async () => {
    for (const field of ['sentAt', 'id']) {
      proxy.reset()
      proxy.rewrite('POST', /^\/v1\/messages$/, (body, _request, status) => (status === 201 ? {...body, [field]: `${body[field]}${OSC_TITLE}`} : body))
      const run = await bob.run(['send', alice.username, `answer with a bad ${field}`])
      expect(run.code, run.stderr).to.equal(3)
      expectClean(run)
      const lines = errorLines(run)
      expect(lines, run.stderr).to.have.length(1)
      expect(lines[0]).to.match(new RegExp(`^Error: .*POST /v1/messages.*\\b${field}\\b`))
    }
    await drain(alice)
  })

  it('hole 3: --json output escapes DEL, C1 controls and bidi characters; the data is unchanged', async () => {
    await drain(bob)
    const text = `csi\u009b2K osc\u009d0;x\u009c rlo\u202egnp.exe del\u007f zwsp\u200b`
    await fromAlice(text)
    const run = await bob.run(['inbox', '--json'])
    expect(run.code, run.stderr).to.equal(0)
    expectClean(run)
    expect(JSON.parse(run.stdout).messages[0].text).to.equal(text)
  })
})
