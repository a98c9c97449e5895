import {createHash, randomBytes} from 'node:crypto'
import {readFile, writeFile} from 'node:fs/promises'
import {join} from 'node:path'

import {expect} from 'chai'

import {CliUser, removeCliHomes} from '../helpers/cli.js'
import {CLUSTER_AUTH, CLUSTER_SECRET, testEnv} from '../helpers/cluster.js'
import {freshDatabase} from '../helpers/database.js'
import {http} from '../helpers/http.js'
import {available, createTopology, type HostProcess, type Hosts} from '../helpers/netns.js'
import {cliIn, HostCli, type JsonLine, startFastchatIn} from '../helpers/netns-cli.js'
import {eventually} from '../helpers/processes.js'

/*
 * Issue 17's acceptance (a) to (d): the direct path between two clients, the
 * fallback to the servers when the recipient is behind a NAT, the direct path
 * while the chat servers are down, and files peer to peer. Each process
 * on a host of its own (test/helpers/netns.ts):
 *
 *   servers: super (superserver :4000), s1, s2 (chat servers :4001); db (.2, a forwarder to PostgreSQL)
 *   clients: c1 (alice), c2 (bob), and nat's public leg      the root namespace routes between the two
 *   behind nat: c3 (carol): she reaches everyone, nobody opens a connection to her
 *
 * The CLI contract it is written against: `fastchat listen --peer --json`
 * prints `{"type":"peer.listening","urls":[...]}` once its peer endpoint
 * listens, `{"type":"peer.offer","from":...}` when it takes in a contact's
 * offer, and a `"via": "direct" | "server"` on every message line;
 * `fastchat send --json` prints the paths that carried the message
 * (`"via": ["direct", "server"]`) and, when the direct post failed, how
 * (`"direct": "unreachable" | "refused"`); the message has one id whichever
 * copy arrives.
 */

const HEARTBEAT_MS = 250
const SUPER_PORT = 4000
const SERVER_PORT = 4001
const MESSAGES = 5

describe('peer-to-peer: the direct path between clients, and the servers behind it (issue 17; network namespaces)', function () {
  this.timeout(90_000)

  let hosts: Hosts | undefined
  const servers: HostProcess[] = []
  let alice: CliUser
  let bob: CliUser
  let carol: CliUser
  /** Where each person runs the CLI. */
  const on = new Map<CliUser, string>()
  /** How bob's client judged a message of alice's that came through the server: a direct copy must be judged the same. */
  let aliceAsBobVerifies: unknown
  let listens: HostCli[] = []
  /** How the chat servers are started (again, in (b)). */
  let serverArgs: string[] = []
  let serverEnv: NodeJS.ProcessEnv = {}
  let superUrl = ''

  before(async function () {
    this.timeout(120_000)
    const reason = await available()
    if (reason) {
      console.log(`      peer-direct: skipped, network namespaces cannot be made here: ${reason}`)
      this.skip()
    }
    hosts = await createTopology({segments: {servers: ['super', 's1', 's2'], clients: ['c1', 'c2']}, nat: {nat: {segment: 'clients', hosts: ['c3']}}})
    const databaseUrl = await hosts.forwardDatabase(await freshDatabase('peerdirect', {migrated: true}))
    const env = testEnv({
      DATABASE_URL: databaseUrl,
      FASTCHAT_CLUSTER_SECRET: CLUSTER_SECRET,
      FASTCHAT_HEARTBEAT_MS: String(HEARTBEAT_MS),
      FASTCHAT_SCRYPT_LOG2_N: '14',
      FASTCHAT_RATE_LIMITS: 'off',
      LOG_LEVEL: 'warn',
    })
    superUrl = `http://${hosts.address('super')}:${SUPER_PORT}`
    servers.push(await startFastchatIn(hosts, 'super', ['superserver', '--port', String(SUPER_PORT), '--host', '0.0.0.0'], env))
    serverArgs = ['server', '--port', String(SERVER_PORT), '--host', '0.0.0.0', '--superserver', superUrl]
    serverEnv = env
    await startChatServers()

    ;[alice, bob, carol] = await Promise.all(['alice', 'bob', 'carol'].map((name) => CliUser.create(name, superUrl)))
    on.set(alice, 'c1').set(bob, 'c2').set(carol, 'c3')
    await Promise.all([alice, bob, carol].map((user) => cli(user, ['register', user.username])))

    // One message each way through the server: each pins the other's key (trust on first use), so they offer to each other.
    // One after the other: the second is the plain send that (c) compares with.
    const toBob = await cli(alice, ['send', bob.username, 'hello bob'])
    const toCarol = await cli(alice, ['send', carol.username, 'hello carol'])
    const [bobsInbox, carolsInbox] = await Promise.all([cli(bob, ['inbox']), cli(carol, ['inbox'])])
    const fromAlice = bobsInbox.messages.find((m: JsonLine) => m.id === toBob.id)
    expect(fromAlice, `bob's inbox: ${JSON.stringify(bobsInbox)}`).to.include({text: 'hello bob'})
    aliceAsBobVerifies = fromAlice.verification
    expect(carolsInbox.messages.map((m: JsonLine) => m.id), "carol's inbox").to.include(toCarol.id)
    await Promise.all([cli(bob, ['send', alice.username, 'hello alice']), cli(carol, ['send', alice.username, 'hello alice'])])
    const alicesInbox = await cli(alice, ['inbox'])
    expect(alicesInbox.messages.map((m: JsonLine) => m.from).sort(), "alice's inbox").to.deep.equal([bob.username, carol.username].sort())
  })

  afterEach(async function () {
    this.timeout(30_000)
    const stopping = listens
    listens = []
    await Promise.all(stopping.map((listen) => listen.stop()))
  })

  after(async function () {
    this.timeout(30_000)
    try {
      await hosts?.destroy()
    } finally {
      await removeCliHomes()
    }
  })

  /** s1 and s2, until the superserver lists both as healthy. */
  async function startChatServers(): Promise<void> {
    servers.push(...(await Promise.all(['s1', 's2'].map((host) => startFastchatIn(hosts!, host, serverArgs, serverEnv)))))
    const want = ['s1', 's2'].map((host) => `http://${hosts!.address(host)}:${SERVER_PORT}`).sort()
    await eventually(async () => {
      const {status, body} = await http<{servers: {url: string; healthy: boolean}[]}>('GET', `${superUrl}/v1/servers`, {headers: CLUSTER_AUTH})
      return status === 200 && body.servers.filter((s) => s.healthy).map((s) => s.url).sort().join(' ') === want.join(' ')
    }, 'the superserver to list s1 and s2, healthy', 15_000)
  }

  const cli = (user: CliUser, args: string[]) => cliIn(hosts!, on.get(user)!, user, args)
  /** `fastchat listen --peer --json` as `user` on their host, stopped after the test. */
  const listenPeer = (user: CliUser, extra: string[] = []): HostCli => {
    const listen = HostCli.start(hosts!, on.get(user)!, user, ['listen', '--peer', ...extra])
    listens.push(listen)
    return listen
  }
  const listening = (listen: HostCli) =>
    listen.waitFor((line) => line.type === 'peer.listening' && Array.isArray(line.urls) && line.urls.length > 0, 'its peer endpoint to listen')
  const offerFrom = (listen: HostCli, user: CliUser) =>
    listen.waitFor((line) => line.type === 'peer.offer' && String(line.from).toLowerCase() === user.username.toLowerCase(), `an offer from ${user.username}`)
  /** The message lines `listen` printed with exactly this text. */
  const printed = (listen: HostCli, text: string) => listen.lines().filter((line) => line.text === text)

  it('(a) between two clients on one segment, each message arrives by the direct path first, and once', async () => {
    const [alices, bobs] = [listenPeer(alice), listenPeer(bob)]
    await Promise.all([listening(alices), listening(bobs)])
    await Promise.all([offerFrom(alices, bob), offerFrom(bobs, alice)])

    const nonce = randomBytes(3).toString('hex')
    const texts = Array.from({length: MESSAGES}, (_, i) => `direct ${i + 1} of ${MESSAGES} (${nonce})`)
    const sent: JsonLine[] = []
    for (const text of texts) {
      const answer = await cli(alice, ['send', bob.username, text])
      expect(answer.via, `send --json: ${JSON.stringify(answer)}`).to.deep.equal(['direct', 'server'])
      sent.push(answer)
    }
    await bobs.waitFor(() => texts.every((text) => printed(bobs, text).length > 0), `all ${MESSAGES} messages from alice`)

    // A message of carol's, through the server (bob has not offered to her, nor she to him), committed after alice's
    // five: once bob's listen prints it, it has read the server's copies of all five from his stream, in order.
    const marker = await cli(carol, ['send', bob.username, `after the direct ones (${nonce})`])
    const markerLine = await bobs.waitFor((line) => line.id === marker.id, "carol's message, after the server's copies of alice's")
    expect(markerLine.via, "carol's message").to.equal('server')

    for (const [i, text] of texts.entries()) {
      const lines = printed(bobs, text)
      expect(lines, `bob's listen lines for "${text}"`).to.have.length(1)
      // One id for both copies: the one alice's client signed (and used as the send's idempotency key).
      expect(lines[0], text).to.include({signedId: sent[i]!.signedId, via: 'direct'})
      expect(String(lines[0]!.from).toLowerCase()).to.equal(alice.username.toLowerCase())
      expect(lines[0]!.verification, 'a direct copy is verified as a server copy is').to.deep.equal(aliceAsBobVerifies)
    }
    // Committed as well, each once (201 still means durable).
    const history = await cli(alice, ['history', bob.username])
    for (const answer of sent) expect(history.messages.filter((m: JsonLine) => m.id === answer.id), `alice's history: ${answer.id}`).to.have.length(1)
  })

  it('(c) to a client behind a NAT the direct attempt fails fast and the servers deliver, once, and the pair stops trying', async () => {
    const [alices, carols] = [listenPeer(alice), listenPeer(carol)]
    await listening(carols)
    await offerFrom(alices, carol)

    const nonce = randomBytes(3).toString('hex')
    // How long the failed attempt costs is the bench's to measure (`npm run bench -- --only peer`); here, what happens.
    const first = await cli(alice, ['send', carol.username, `behind the NAT (${nonce})`])
    // Unreachable, not refused: the NAT host drops the connection attempt.
    expect(first, `send --json: ${JSON.stringify(first)}`).to.deep.include({via: ['server'], direct: 'unreachable'})
    await carols.waitFor((line) => line.id === first.id, "carol's listen to print alice's message")

    const second = await cli(alice, ['send', carol.username, `behind the NAT, again (${nonce})`])
    // Issue 17: after one failure the pair uses the servers until a new offer: no direct attempt, so no `direct` outcome.
    expect(second.via, `send --json: ${JSON.stringify(second)}`).to.deep.equal(['server'])
    expect(second.direct, `send --json: ${JSON.stringify(second)}`).to.equal(undefined)
    await carols.waitFor((line) => line.id === second.id, "carol's listen to print alice's second message")

    for (const answer of [first, second]) {
      const lines = carols.lines().filter((line) => line.id === answer.id)
      expect(lines, `carol's listen lines for ${answer.id}`).to.have.length(1)
      expect(lines[0]).to.include({via: 'server'})
    }
  })

  it('(b) with the chat servers stopped, messages still flow directly both ways, and reach the server once each after they restart', async () => {
    const [alices, bobs] = [listenPeer(alice), listenPeer(bob)]
    await Promise.all([listening(alices), listening(bobs)])
    await Promise.all([offerFrom(alices, bob), offerFrom(bobs, alice)])

    const chat = servers.splice(1)
    await Promise.all(chat.map((server) => server.stop()))
    const nonce = randomBytes(3).toString('hex')
    const texts = [1, 2, 3].map((i) => `while the servers are down ${i} (${nonce})`)
    for (const text of texts) {
      const answer = await cli(alice, ['send', bob.username, text])
      expect(answer, `send --json: ${JSON.stringify(answer)}`).to.deep.include({via: ['direct'], queued: true})
    }
    const back = `an answer while they are down (${nonce})`
    expect(await cli(bob, ['send', alice.username, back])).to.deep.include({via: ['direct'], queued: true})
    await bobs.waitFor(() => texts.every((text) => printed(bobs, text).length === 1), 'bob to show all three directly')
    await alices.waitFor(() => printed(alices, back).length === 1, "alice to show bob's answer directly")

    await startChatServers()
    // Nobody sends again: each listen commits its profile's kept messages once a server answers (its first page after the outage).
    const stored = async (user: CliUser, peer: CliUser, text: string) =>
      (await cli(user, ['history', peer.username, '--limit', '50'])).messages.filter((m: JsonLine) => m.text === text) as JsonLine[]
    await eventually(async () => (await Promise.all(texts.map((text) => stored(alice, bob, text)))).every((found) => found.length > 0), "alice's kept messages on the server", 60_000)
    await eventually(async () => (await stored(bob, alice, back)).length > 0, "bob's kept message on the server", 60_000)
    for (const text of texts) expect(await stored(alice, bob, text), text).to.have.length(1)
    expect(await stored(bob, alice, back)).to.have.length(1)

    // Once bob's listen has read a message committed after them, it has read their server copies: still shown once each.
    const marker = await cli(carol, ['send', bob.username, `after the outage (${nonce})`])
    await bobs.waitFor((line) => line.id === marker.id, "carol's message")
    for (const text of texts) {
      expect(printed(bobs, text), text).to.have.length(1)
      expect(printed(bobs, text)[0]).to.include({via: 'direct'})
    }
  })

  it('(d) a 50 MiB file, over the server\'s limit, goes peer to peer; a 5 MiB file to a recipient who is offline goes through the server', async () => {
    const bobs = listenPeer(bob, ['--max-download', '100'])
    const alices = listenPeer(alice)
    await listening(bobs)
    await offerFrom(alices, bob)

    const nonce = randomBytes(3).toString('hex')
    const big = join(alice.home, `big-${nonce}.bin`)
    const bytes = randomBytes(50 * 1024 * 1024)
    await writeFile(big, bytes)
    const sent = await cli(alice, ['send', bob.username, `fifty (${nonce})`, '--image', big])
    expect(sent, `send --json: ${JSON.stringify(sent)}`).to.deep.include({via: ['direct'], blob: null})
    const line = await bobs.waitFor((item) => item.kind === 'image' && item.caption === `fifty (${nonce})`, 'bob to save the file')
    expect(line).to.include({via: 'direct', size: bytes.length})
    expect(line.verification.status).to.equal('valid')
    expect(createHash('sha256').update(await readFile(line.path)).digest('hex')).to.equal(createHash('sha256').update(bytes).digest('hex'))
    // The server keeps the message (its signed caption), not the file; bob's history finds the copy he saved.
    const history = await cli(alice, ['history', bob.username, '--limit', '10'])
    expect(history.messages.filter((m: JsonLine) => m.caption === `fifty (${nonce})`)).to.have.length(1)
    const inBobsHistory = (await cli(bob, ['history', alice.username, '--limit', '10'])).messages.filter((m: JsonLine) => m.caption === `fifty (${nonce})`)
    expect(inBobsHistory).to.have.length(1)
    expect(inBobsHistory[0]).to.include({path: line.path})

    // Carol is not listening: no offer from her is fresh, so the file goes through the server, and she gets it later.
    const five = join(alice.home, `five-${nonce}.bin`)
    const small = randomBytes(5 * 1024 * 1024)
    await writeFile(five, small)
    const toCarol = await cli(alice, ['send', carol.username, `five (${nonce})`, '--image', five])
    expect(toCarol.via).to.deep.equal(['server'])
    expect(toCarol.blob).to.be.a('string')
    const inbox = await cli(carol, ['inbox'])
    const got = inbox.messages.find((m: JsonLine) => m.caption === `five (${nonce})`)
    expect(got, JSON.stringify(inbox)).to.include({size: small.length})
    expect(createHash('sha256').update(await readFile(got.path)).digest('hex')).to.equal(createHash('sha256').update(small).digest('hex'))
  })
})
