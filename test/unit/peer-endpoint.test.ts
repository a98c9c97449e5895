import {once} from 'node:events'
import {request as httpRequest} from 'node:http'

import {expect} from 'chai'

import {closePeerConnections, type DirectArrival, type DirectFileArrival, PEER_FILES_PATH, PEER_MESSAGES_PATH, PEER_PROOF_HEADER, PeerEndpoint, postDirect, proofOf} from '../../client/peer.js'

const ARMORED = '-----BEGIN PGP MESSAGE-----\n\nwcBMA\n-----END PGP MESSAGE-----\n'

/** One raw request: status, headers, and how the endpoint ended it. */
async function raw(port: number, path: string, headers: Record<string, string>, body: Buffer | string): Promise<{status: number; proof: string | undefined}> {
  const req = httpRequest({host: '127.0.0.1', port, path, method: 'POST', headers})
  req.on('error', () => undefined) // the endpoint may close while the body is still going (a refusal)
  req.end(body)
  const [res] = (await once(req, 'response')) as [import('node:http').IncomingMessage]
  res.resume()
  return {status: res.statusCode ?? 0, proof: res.headers[PEER_PROOF_HEADER] as string | undefined}
}

/** A direct file post's body: the head's length, the head, the file. */
function fileBody(meta: object, file: Buffer): Buffer {
  const head = Buffer.from(JSON.stringify(meta))
  const length = Buffer.alloc(4)
  length.writeUInt32BE(head.length)
  return Buffer.concat([length, head, file])
}

/** The peer endpoint as a hostile network sees it (client/peer.ts): a real listener on 127.0.0.1. */
describe('peer endpoint', () => {
  let endpoint: PeerEndpoint
  let port: number
  const messages: DirectArrival[] = []
  const files: DirectFileArrival[] = []

  beforeEach(async () => {
    messages.length = 0
    files.length = 0
    endpoint = new PeerEndpoint((message) => void messages.push(message), {onFile: (file) => void files.push(file), maxBytes: 64 * 1024 * 1024})
    port = await endpoint.listen('127.0.0.1', 0)
  })
  afterEach(() => endpoint.close())
  after(() => closePeerConnections())

  const message = (from: string) => JSON.stringify({from, to: {user: 'bob'}, kind: 'text', ciphertext: ARMORED})

  it('takes a post only with the capability it gave that contact, and proves it holds it', async () => {
    const cap = endpoint.capabilityFor('Alice')
    const body = message('alice')
    const ok = await raw(port, PEER_MESSAGES_PATH, {authorization: `Bearer ${cap}`, 'content-type': 'application/json'}, body)
    expect(ok.status).to.equal(202)
    expect(ok.proof).to.equal(proofOf(cap, body))
    expect(messages).to.have.length(1)

    // Carol's capability does not let her post as alice, nor does none, nor a made-up one; other paths are not there.
    const carols = endpoint.capabilityFor('carol')
    expect((await raw(port, PEER_MESSAGES_PATH, {authorization: `Bearer ${carols}`}, body)).status).to.equal(401)
    expect((await raw(port, PEER_MESSAGES_PATH, {}, body)).status).to.equal(401)
    expect((await raw(port, PEER_MESSAGES_PATH, {authorization: `Bearer ${'A'.repeat(43)}`}, body)).status).to.equal(401)
    expect((await raw(port, '/v1/messages', {authorization: `Bearer ${cap}`}, body)).status).to.equal(404)
    expect((await raw(port, PEER_MESSAGES_PATH, {authorization: `Bearer ${cap}`}, '{"from":"alice"}')).status).to.equal(400)
    expect(messages).to.have.length(1)
  })

  it('a sender trusts only an answer that proves the endpoint holds the capability', async () => {
    const offer = {id: 'x', from: 'bob', urls: [`http://127.0.0.1:${port}`], capability: endpoint.capabilityFor('alice'), expiresAt: new Date(Date.now() + 60_000).toISOString()}
    const direct = {from: 'alice', to: {user: 'bob'}, kind: 'text' as const, ciphertext: ARMORED}
    expect(await postDirect(offer, direct)).to.equal('direct')
    // The same endpoint under an offer with another capability: refused, not taken as delivered.
    expect(await postDirect({...offer, capability: endpoint.capabilityFor('mallory')}, direct)).to.equal('refused')
    // Nothing listening there: unreachable.
    await endpoint.close()
    expect(await postDirect(offer, direct)).to.equal('unreachable')
  })

  it('one contact flooding is answered 429 past its share; another contact still gets in', async () => {
    const cap = endpoint.capabilityFor('alice')
    const statuses: number[] = []
    for (let i = 0; i < 1_010; i++) statuses.push((await raw(port, PEER_MESSAGES_PATH, {authorization: `Bearer ${cap}`}, message('alice'))).status)
    expect(statuses.filter((status) => status === 202)).to.have.length(1_000)
    expect(statuses.slice(1_000)).to.deep.equal(Array(10).fill(429))
    expect((await raw(port, PEER_MESSAGES_PATH, {authorization: `Bearer ${endpoint.capabilityFor('carol')}`}, message('carol'))).status).to.equal(202)
  })

  it('a file is refused by its announced size, and by its head, before its bytes are taken', async () => {
    const cap = endpoint.capabilityFor('alice')
    const meta = {from: 'alice', to: {user: 'bob'}, caption: ARMORED}
    const file = Buffer.alloc(1024 * 1024, 7)
    const ok = await raw(port, PEER_FILES_PATH, {authorization: `Bearer ${cap}`, 'content-length': String(fileBody(meta, file).length)}, fileBody(meta, file))
    expect(ok.status).to.equal(202)
    expect(files).to.have.length(1)
    expect(Buffer.from(files[0]!.sealed).equals(file)).to.equal(true)

    // Over the limit: 413 from the length alone.
    const huge = {authorization: `Bearer ${cap}`, 'content-length': String(65 * 1024 * 1024 + 200_000)}
    expect((await raw(port, PEER_FILES_PATH, huge, Buffer.alloc(16))).status).to.equal(413)
    // Twenty strangers announcing 60 MiB each and sending a head with a capability that is not theirs: each 401
    // from the head, and the endpoint's memory does not grow by what they announced (1.2 GiB).
    const before = process.memoryUsage().arrayBuffers
    const strangers = await Promise.all(
      Array.from({length: 20}, (_, i) => {
        const body = fileBody({...meta, from: `stranger${i}`}, Buffer.alloc(1024))
        return raw(port, PEER_FILES_PATH, {authorization: `Bearer ${cap}`, 'content-length': String(60 * 1024 * 1024)}, body)
      }),
    )
    expect(strangers.map((answer) => answer.status)).to.deep.equal(Array(20).fill(401))
    expect(process.memoryUsage().arrayBuffers - before).to.be.below(64 * 1024 * 1024)
    expect(files).to.have.length(1)
  })

  it('takes one file at a time from a contact: a second one while the first is still coming is answered 429', async () => {
    const cap = endpoint.capabilityFor('alice')
    const meta = {from: 'alice', to: {user: 'bob'}, caption: ARMORED}
    const body = fileBody(meta, Buffer.alloc(2 * 1024 * 1024, 1))
    const first = httpRequest({host: '127.0.0.1', port, path: PEER_FILES_PATH, method: 'POST', headers: {authorization: `Bearer ${cap}`, 'content-length': String(body.length)}})
    first.on('error', () => undefined)
    const firstAnswer = once(first, 'response') as Promise<[import('node:http').IncomingMessage]>
    // The head and some of the file: the endpoint has taken it on.
    first.write(body.subarray(0, 1024 * 1024))
    const second = fileBody(meta, Buffer.alloc(16))
    // Until the endpoint has read the first one's head, a second may still get in (202): counted, then it must be 429.
    let status = 0
    let before = 0
    for (let i = 0; i < 50 && status !== 429; i++) {
      status = (await raw(port, PEER_FILES_PATH, {authorization: `Bearer ${cap}`, 'content-length': String(second.length)}, second)).status
      if (status === 202) before++
    }
    expect(status).to.equal(429)
    first.end(body.subarray(1024 * 1024))
    const [answer] = await firstAnswer
    answer.resume()
    expect(answer.statusCode).to.equal(202)
    expect(files).to.have.length(1 + before)
    // Done: the next one is taken.
    expect((await raw(port, PEER_FILES_PATH, {authorization: `Bearer ${cap}`, 'content-length': String(second.length)}, second)).status).to.equal(202)
  })
})
