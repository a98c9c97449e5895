import {randomUUID} from 'node:crypto'
import {once} from 'node:events'
import {readFile} from 'node:fs/promises'
import {createServer, type IncomingMessage, type Server} from 'node:http'
import type {AddressInfo} from 'node:net'

import {expect} from 'chai'

import {waitForHealthy, startTestServer} from '../helpers/cluster.js'
import {encryptText, unlockPrivateKey} from '../../crypto/index.js'
import {CliUser, PASSPHRASE, spawnCli, startTwoUserCluster, stopTwoUserCluster, type TwoUserCluster} from '../helpers/cli.js'
import {http} from '../helpers/http.js'
import {listen, type Listening} from '../helpers/listen.js'
import {dataOf, openStream} from '../helpers/sse.js'
import {eventually} from '../helpers/processes.js'

type Line = Record<string, unknown>

/**
 * Issue 17 on one machine (127.0.0.1): the direct path between two clients
 * beside the servers' (test/integration/peer-hosts.test.ts runs it across
 * network namespaces, with NAT). The CLI throughout, as a user runs it.
 */
describe('peer path (direct client to client, on loopback)', function () {
  this.timeout(120_000)

  let cluster: TwoUserCluster
  let bobListen: Listening | undefined
  const fakes: Server[] = []

  /** bob's messages as his listen printed them, by text. */
  const printed = (text: string) => (bobListen?.lines() ?? []).filter((line) => line.text === text)

  before(async () => {
    cluster = await startTwoUserCluster()
    const {alice, bob} = cluster
    // Each pins the other's key on first use: alice by writing, bob by reading (offers go to pinned contacts only).
    await alice.json(['send', bob.username, 'first, through the server'])
    await bob.json(['inbox', '--timeout', '10000'])
  })

  after(async () => {
    await bobListen?.stop()
    for (const fake of fakes) fake.closeAllConnections?.()
    await Promise.all(fakes.map((fake) => new Promise((resolve) => fake.close(resolve))))
    await stopTwoUserCluster(cluster ?? {})
  })

  /** Starts bob's `listen --peer` and waits for his endpoint to be offered to alice. */
  async function bobListens(): Promise<Line> {
    bobListen = listen(cluster.bob, ['--peer', '--peer-host', '127.0.0.1'])
    return eventually(async () => bobListen!.lines().find((line) => line.type === 'peer.listening'), `bob's peer endpoint (stderr: ${bobListen?.stderr()})`, 30_000)
  }

  /** alice takes in what her stream holds (bob's offer among it) and returns bob's offer as stored in her profile. */
  async function aliceTakesOffer(alice: CliUser, bob: CliUser, url?: string): Promise<{urls: string[]; capability: string; failed?: string}> {
    return eventually(async () => {
      await alice.json(['inbox', '--timeout', '0'])
      const book = await alice.readJson<{offers: Record<string, {urls: string[]; capability: string; failed?: string}>}>('peers.json').catch(() => undefined)
      const offer = book?.offers[bob.username.toLowerCase()]
      return offer && (url === undefined || offer.urls.includes(url)) ? offer : undefined
    }, `alice to take in bob's offer${url ? ` of ${url}` : ''}`, 20_000)
  }

  it('offers carry only ciphertext through the server; a message goes both ways and bob shows it once, as come directly', async () => {
    const {alice, bob} = cluster
    const listening = await bobListens()
    expect(listening.offered).to.equal(1)
    expect(listening.urls).to.deep.equal([`http://127.0.0.1:${new URL((listening.urls as string[])[0]!).port}`])
    const offer = await aliceTakesOffer(alice, bob)
    expect(offer.urls).to.deep.equal(listening.urls)

    // What the server relayed: an armored message, no address or capability in the clear.
    const history = await http<{events: Line[]}>('GET', `${cluster.servers[0]!.url}/v1/events?since=0&timeout=0&ack=false`, {
      headers: {authorization: `Bearer ${(await alice.readJson<{token: string}>('profile.json')).token}`},
    })
    const relayed = (history.body.events ?? []).filter((event) => event.type === 'peer.offer')
    if (history.status === 200) {
      expect(relayed.length).to.be.greaterThan(0)
      for (const event of relayed) {
        expect(String(event.ciphertext)).to.match(/^-----BEGIN PGP MESSAGE-----/)
        expect(JSON.stringify(event)).not.to.include('127.0.0.1').and.not.to.include(offer.capability)
      }
    }

    const sent = await alice.json<{id: string; via: string[]}>(['send', bob.username, 'hello directly'])
    expect(sent.via).to.deep.equal(['direct', 'server'])
    const [shown] = await eventually(async () => (printed('hello directly').length > 0 ? printed('hello directly') : undefined), 'bob to show it')
    expect(shown).to.include({from: alice.username, via: 'direct'})
    expect((shown as {verification: {status: string}}).verification.status).to.equal('valid')
    // The server copy has been read (bob's cursor passed it: its server id is among his seen ids), and dropped.
    await eventually(async () => (await bob.readJson<{recentIds: string[]}>('state.json')).recentIds.includes(sent.id), `bob's listen to read the server copy`)
    expect(printed('hello directly')).to.have.length(1)
    // bob read it (its direct copy): his read receipt names the server's message, so alice's history shows it read.
    await eventually(async () => {
      const history = await alice.json<{messages: {id: string; status?: string}[]}>(['history', bob.username, '--limit', '5'])
      return history.messages.find((message) => message.id === sent.id)?.status === 'read'
    }, 'alice to see it read', 20_000)
  })

  it('an offer from someone who is not a pinned contact, however well signed, is ignored and pins nobody', async () => {
    const {bob} = cluster
    const carol = await CliUser.create('carol', cluster.superserver.url)
    await carol.register()
    const profile = await carol.readJson<{server: string; token: string}>('profile.json')
    const key = await unlockPrivateKey(await readFile(carol.file('private-key.asc'), 'utf8'), PASSPHRASE)
    const bobsKey = await http<{publicKey: string}>('GET', `${profile.server}/v1/users/${bob.username}`, {headers: {authorization: `Bearer ${profile.token}`}})
    const offer = {v: 1, type: 'peer.offer', id: randomUUID(), to: bob.username, urls: ['http://127.0.0.1:9'], capability: 'A'.repeat(43), expiresAt: new Date(Date.now() + 60_000).toISOString()}
    const ciphertext = await encryptText({text: JSON.stringify(offer), to: [bobsKey.body.publicKey], signer: key})
    const posted = await http('POST', `${profile.server}/v1/peer-offers`, {headers: {authorization: `Bearer ${profile.token}`}, json: {offers: [{to: bob.username, ciphertext}]}})
    expect(posted.status).to.equal(204)
    const line = await eventually(async () => bobListen!.lines().find((item) => item.type === 'peer.offer' && item.from === carol.username), "bob's listen to take carol's offer in")
    expect(line).to.include({accepted: false, reason: 'not a pinned contact'})
    expect(Object.keys(await bob.readJson<Record<string, unknown>>('contacts.json'))).not.to.include(carol.username.toLowerCase())
    const book = await bob.readJson<{offers: Record<string, unknown>}>('peers.json').catch(() => ({offers: {}}))
    expect(Object.keys(book.offers)).not.to.include(carol.username.toLowerCase())
  })

  it('ten sends back to back: whichever copy comes first, each message is shown once (one id for both)', async () => {
    const {alice, bob} = cluster
    // Ten sends back to back: whichever copy wins each race, each is shown once.
    const texts = Array.from({length: 10}, (_, i) => `race ${i}`)
    for (const text of texts) await alice.json(['send', bob.username, text])
    await eventually(async () => texts.every((text) => printed(text).length > 0), 'bob to show all ten')
    const sentIds = (await alice.json<{messages: {id: string; text: string}[]}>(['history', bob.username, '--limit', '20'])).messages
      .filter((message) => texts.includes(message.text))
      .map((message) => message.id)
    expect(sentIds).to.have.length(10)
    await eventually(async () => {
      const seen = (await bob.readJson<{recentIds: string[]}>('state.json')).recentIds
      return sentIds.every((id) => seen.includes(id))
    }, 'bob to read every server copy')
    for (const text of texts) expect(printed(text), text).to.have.length(1)
  })

  it('an endpoint that answers wrongly (no proof) is used once, then never again for that offer; the message goes through the server', async () => {
    const {alice, bob} = cluster
    const requests: IncomingMessage[] = []
    const fake = createServer((req, res) => {
      requests.push(req)
      req.resume()
      res.writeHead(202).end() // says yes, but cannot prove it holds the offer's capability
    })
    fakes.push(fake)
    fake.listen(0, '127.0.0.1')
    await once(fake, 'listening')
    const book = await alice.readJson<{offers: Record<string, {urls: string[]; failed?: string}>; outbox: unknown[]}>('peers.json')
    book.offers[bob.username.toLowerCase()]!.urls = [`http://127.0.0.1:${(fake.address() as AddressInfo).port}`]
    await alice.writeJson('peers.json', book)

    const first = await alice.json<{id: string; via: string[]; direct?: string}>(['send', bob.username, 'to an impostor endpoint'])
    expect(first).to.deep.include({via: ['server'], direct: 'refused'})
    expect(requests).to.have.length(1)
    const second = await alice.json<{via: string[]; direct?: string}>(['send', bob.username, 'after the impostor'])
    expect(second.via).to.deep.equal(['server'])
    expect(second.direct).to.equal(undefined)
    expect(requests, 'not tried again').to.have.length(1)
    await eventually(async () => printed('after the impostor').length > 0, 'bob to get it through the server')
    expect(printed('to an impostor endpoint')).to.have.length(1)
    expect(printed('after the impostor')[0]).to.include({via: 'server'})
  })

  it('with every chat server down, messages still go directly, are kept by the sender, and are stored once when a server is back', async () => {
    const {alice, bob} = cluster
    // A fresh offer from bob (the impostor test spoiled the last one): restart his listen.
    await bobListen!.stop()
    const before = bobListen!.lines()
    const listening = await bobListens()
    await aliceTakesOffer(alice, bob, (listening.urls as string[])[0])
    void before

    await Promise.all(cluster.servers.map((server) => server.close()))
    cluster.servers = []
    const queued = await alice.json<{id: string; via: string[]; queued?: boolean}>(['send', bob.username, 'while the servers are down'])
    expect(queued).to.deep.include({via: ['direct'], queued: true})
    await eventually(async () => printed('while the servers are down').length > 0, 'bob to show it directly')
    expect(printed('while the servers are down')[0]).to.include({via: 'direct'})
    expect((await alice.readJson<{outbox: unknown[]}>('peers.json')).outbox).to.have.length(1)

    cluster.servers.push(await startTestServer(cluster.superserver.url), await startTestServer(cluster.superserver.url))
    await waitForHealthy(cluster.superserver.url, cluster.servers.map((server) => server.url))
    // The next send commits the kept one first, with its idempotency key.
    await alice.json(['send', bob.username, 'servers back'])
    expect((await alice.readJson<{outbox: unknown[]}>('peers.json')).outbox).to.have.length(0)
    const history = (await alice.json<{messages: {id: string; text: string}[]}>(['history', bob.username, '--limit', '50'])).messages
    const stored = history.filter((message) => message.text === 'while the servers are down')
    expect(stored, 'stored once').to.have.length(1)
    await eventually(async () => (await bob.readJson<{recentIds: string[]}>('state.json')).recentIds.includes(stored[0]!.id), `bob's listen to read its server copy`, 30_000)
    expect(printed('while the servers are down'), 'shown once').to.have.length(1)
  })

  it('a daemon with --peer hands what comes directly to the reader of its stream, and whichever copy comes first only once', async () => {
    const {alice, bob} = cluster
    await bobListen?.stop()
    bobListen = undefined
    const daemon = spawnCli(['daemon', '--peer', '--peer-host', '127.0.0.1', '--port', '0'], bob.env())
    try {
      const endpoint = await eventually(async () => /Peer endpoint at (http:\/\/127\.0\.0\.1:\d+), offered to 1 contact/.exec(daemon.stderr())?.[1], `the daemon's endpoint (stderr: ${daemon.stderr()})`, 30_000)
      const info = await eventually(async () => bob.readJson<{url: string; token: string}>('daemon.json').catch(() => undefined), 'daemon.json')
      const stream = await openStream(`${info.url}/v1/messages/stream`, {authorization: `Bearer ${info.token}`})
      try {
        await aliceTakesOffer(alice, bob, endpoint)
        const sent = await alice.json<{id: string; via: string[]; signedId: string}>(['send', bob.username, 'to the daemon, directly'])
        expect(sent.via).to.deep.equal(['direct', 'server'])
        const first = await stream.until((event) => event.event === 'message' && dataOf(event).text === 'to the daemon, directly', 20_000)
        // The direct copy comes first unless the daemon took longer than the sender's head start (at most 100 ms) to
        // answer and the server copy overtook it, which a loaded machine (CI's two workers) can make happen: then
        // that one is shown, and the direct copy must not come after it (below) either.
        if (dataOf(first).via === 'direct') {
          expect(dataOf(first)).to.include({signedId: sent.signedId})
          expect(first.id, 'a direct item moves no cursor').to.equal(undefined)
        }
        // (A server copy's `id:` comes after the last event of its page, so the first one may carry none.)
        // A message after it, through the server only (carol has no offer): once the stream has it, it has read past the copy.
        const carol = await CliUser.create('carol', cluster.superserver.url)
        await carol.register()
        await carol.json(['send', bob.username, 'after the direct one'])
        const seenBetween: string[] = []
        await stream.until((event) => {
          if (event.event === 'message') seenBetween.push(String(dataOf(event).text))
          return event.event === 'message' && dataOf(event).text === 'after the direct one'
        }, 20_000)
        expect(seenBetween).not.to.include('to the daemon, directly')
      } finally {
        stream.close()
      }
    } finally {
      daemon.child.kill('SIGINT')
      await once(daemon.child, 'exit')
    }
  })
})
