import {createHash, createHmac, randomBytes, randomUUID, timingSafeEqual} from 'node:crypto'
import {once} from 'node:events'
import {createServer, type IncomingMessage, type Server, type ServerResponse} from 'node:http'
import {type AddressInfo, connect, type Socket} from 'node:net'
import {networkInterfaces} from 'node:os'
import {Readable} from 'node:stream'

import type {RateLimiterMemory} from 'rate-limiter-flexible'
import type {Agent} from 'undici'
import {z} from 'zod'

import {CryptoError, decryptText, encryptText} from '../crypto/index.js'
import {PEER_OFFERS_PER_REQUEST_MAX} from '../protocol/requests.js'
import type {PeerOfferEvent} from '../protocol/events.js'
import type {ChatSession} from './session.js'
import type {PeerBook, PeerOffer} from './store.js'
import type {KeyDirectory} from './trust.js'

/**
 * The direct path between clients (docs/architecture.md, "Delivery paths";
 * docs/security.md, "Peer endpoints").
 *
 * A long-running client (`listen --peer`, `daemon --peer`) opens a peer endpoint:
 * an HTTP listener. It tells its pinned contacts where it is in a peer offer,
 * signed and encrypted to each contact, which the chat server relays as a
 * `peer.offer` event (ciphertext: the server learns no address). Its plaintext:
 *
 *   {"v": 1, "type": "peer.offer", "id": "<uuid>", "to": "alice",
 *    "urls": ["http://192.168.1.20:41234", "http://203.0.113.9:41234"],
 *    "capability": "<base64url>", "expiresAt": "<ISO 8601>"}
 *
 * `capability` is the contact's own secret for this endpoint (an HMAC of the
 * endpoint's random key and the contact's name): only that contact can post,
 * and the endpoint proves it holds the key by answering each post with
 * `fastchat-peer-proof: HMAC-SHA256(capability, SHA-256(body))`. A sender
 * posts the same signed ciphertext it commits to the server; the receiver
 * opens and verifies it exactly as a server-delivered one, and shows
 * whichever copy comes first (one signed id for both).
 */

export const PEER_OFFER_VERSION = 1
/** How long an offer is good for; a listener offers again at half of it. */
export const PEER_OFFER_TTL_MS = 10 * 60 * 1000
/** How often a listener checks whether its candidates changed (then it offers again at once). */
export const PEER_CHECK_MS = 30_000
/** Contacts one listener offers to: the most recently pinned first. */
export const PEER_OFFER_CONTACTS_MAX = 500
/** Most a direct post waits for a connection to one candidate: an unreachable one (NAT, firewall) costs this, once. */
export const PEER_CONNECT_TIMEOUT_MS = 300
/**
 * How long a send lets the direct copy go first before it commits to the
 * server (unless the endpoint answered sooner): what an unreachable peer adds
 * to a send's 201, once per offer.
 */
export const DIRECT_HEAD_START_MS = 100
/** Most a direct post waits for the answer once connected. */
const PEER_ANSWER_TIMEOUT_MS = 2_000
/** Largest body the endpoint takes: a full-size text message and its envelope. */
const PEER_BODY_MAX_BYTES = 160 * 1024
/** Connections one endpoint holds at once. */
const PEER_MAX_CONNECTIONS = 64
/** Most one request to the endpoint may take (a large file on a slow link), and most a connection may stay silent. */
const PEER_REQUEST_TIMEOUT_MS = 5 * 60_000
const PEER_IDLE_TIMEOUT_MS = 30_000
/** Posts one contact may make in PEER_POSTS_WINDOW_S seconds (a chatty bot stays under it; each costs ~3 ms of decryption); more are answered 429, and the sender's server copy carries them. */
const PEER_POSTS_PER_WINDOW = 1_000
const PEER_POSTS_WINDOW_S = 10
/** Files being received at once, in all and per contact: each is held in memory until it is saved. */
const PEER_FILES_AT_ONCE = 2
export const PEER_MESSAGES_PATH = '/fastchat-peer/v1/messages'
/**
 * A file, streamed: a 4-byte big-endian length, that many bytes of JSON
 * (directFileMeta: who, to whom, the encrypted caption that describes it),
 * then the encrypted file exactly as it would be uploaded as a blob.
 */
export const PEER_FILES_PATH = '/fastchat-peer/v1/files'
/** Most a file post waits between two chunks of the answer (the receiver decrypts nothing before answering). */
const PEER_FILE_ANSWER_TIMEOUT_MS = 30_000
export const PEER_PROOF_HEADER = 'fastchat-peer-proof'

const offerPlaintext = z.strictObject({
  v: z.literal(PEER_OFFER_VERSION),
  type: z.literal('peer.offer'),
  id: z.uuid(),
  to: z.string().min(1).max(64),
  // Plain IPv4 addresses only: no name for the client to look up (and so no lookup a contact could watch).
  urls: z
    .array(z.url({protocol: /^http$/, hostname: /^\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}$/}).max(200))
    .min(1)
    .max(16),
  capability: z.string().regex(/^[A-Za-z0-9_-]{43}$/),
  expiresAt: z.iso.datetime(),
  /** The offerer's devices at the time: with more than one, a file sent directly is stored on the server too, for the others. */
  devices: z.number().int().min(1).max(1000).optional(),
})

/** What a direct post carries: what the server would hand out, less what only the server knows. */
export const directMessage = z.strictObject({
  from: z.string().min(1).max(64),
  to: z.strictObject({user: z.string().min(1).max(64)}),
  kind: z.literal('text'),
  ciphertext: z.string().min(1).max(PEER_BODY_MAX_BYTES),
})
export type DirectMessage = z.infer<typeof directMessage>

/** The head of a direct file post: the file's own bytes follow it (PEER_FILES_PATH). */
export const directFileMeta = z.strictObject({
  from: z.string().min(1).max(64),
  to: z.strictObject({user: z.string().min(1).max(64)}),
  /** The caption, as an image message carries it: signed, bound to the file's id (always present: it names the file). */
  caption: z.string().min(1).max(64 * 1024),
})
export type DirectFileMeta = z.infer<typeof directFileMeta>
const META_MAX_BYTES = 80 * 1024

/** What taking in an offer gives (`listen --json` prints it). */
export interface PeerOfferNotice {
  type: 'peer.offer'
  /** `peer.offer:<seq>`. */
  id: string
  from: string
  accepted: boolean
  /** Why not, when not accepted. */
  reason?: string
  expiresAt?: string
  candidates?: number
}

export const isPeerOfferEvent = (event: {type: string}): event is PeerOfferEvent => event.type === 'peer.offer'

const same = (a: string, b: string) => a.toLowerCase() === b.toLowerCase()
const base64url = (bytes: Buffer) => bytes.toString('base64url')
const sha256 = (data: string | Buffer) => createHash('sha256').update(data).digest()
export const proofOf = (capability: string, body: string | Buffer) => createHmac('sha256', capability).update(sha256(body)).digest('hex')

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}

/**
 * The result of one direct post; 'too-large': the endpoint takes no file
 * that large (its owner's download limit); 'busy': it takes no more from me
 * for now (a flood, or files already coming). Only 'unreachable' and
 * 'refused' end the offer.
 */
export type DirectResult = 'direct' | 'unreachable' | 'refused' | 'too-large' | 'busy'

let dispatcher: Agent | undefined
/**
 * undici, loaded at the first direct post: most commands never make one, and
 * loading it costs a command ~0.1 s of its start (docs/cli.md, "Start-up").
 */
const undici = () => import('undici')
/**
 * Loads what a direct post needs, before its head start starts counting
 * (DIRECT_HEAD_START_MS: on a busy machine the import alone took longer).
 */
export async function loadDirectTransport(): Promise<void> {
  await undici()
}
/** One connection pool for every direct post, with the short connect timeout (kept open: a conversation posts again). */
const peerDispatcher = async () => (dispatcher ??= new (await undici()).Agent({connect: {timeout: PEER_CONNECT_TIMEOUT_MS}, keepAliveTimeout: 30_000, connections: 8}))

/** Closes the direct posts' connections (the end of a command). */
export async function closePeerConnections(): Promise<void> {
  const closing = dispatcher
  dispatcher = undefined
  await closing?.close()
}

/**
 * Posts `message` to the endpoint an offer names, trying its candidates in
 * order. 'direct': accepted, and the answer proved the endpoint holds the
 * offer's key. 'unreachable': no candidate answered (each costs at most
 * PEER_CONNECT_TIMEOUT_MS to connect). 'refused': an endpoint answered, but
 * wrongly (refused the capability, or no valid proof): not the offerer's.
 */
export async function postDirect(offer: PeerOffer, message: DirectMessage, signal?: AbortSignal): Promise<DirectResult> {
  const url = await firstReachable(offer.urls)
  if (!url) return 'unreachable'
  const body = JSON.stringify(message)
  const {request} = await undici()
  let answer
  try {
    answer = await request(new URL(PEER_MESSAGES_PATH, url), {
      method: 'POST',
      dispatcher: await peerDispatcher(),
      headers: {'content-type': 'application/json', authorization: `Bearer ${offer.capability}`},
      body,
      headersTimeout: PEER_ANSWER_TIMEOUT_MS,
      bodyTimeout: PEER_ANSWER_TIMEOUT_MS,
      signal,
    })
  } catch {
    return 'unreachable' // it went away between the two
  }
  await answer.body.dump({limit: 16 * 1024}).catch(() => undefined)
  if (answer.statusCode === 429) return 'busy'
  return answer.statusCode === 202 && answer.headers[PEER_PROOF_HEADER] === proofOf(offer.capability, body) ? 'direct' : 'refused'
}

/**
 * The candidate that accepts a TCP connection first, all tried at once, each
 * for at most PEER_CONNECT_TIMEOUT_MS: an offer's unreachable addresses (a
 * NAT, a firewall that drops, a peer gone) cost that once in all, not once
 * each, and a nearby address wins over a far one. Undefined when none does.
 */
export function firstReachable(urls: string[]): Promise<string | undefined> {
  return new Promise((resolve) => {
    let pending = urls.length
    let done = false
    const sockets: Socket[] = []
    const finish = (url: string | undefined) => {
      if (done) return
      done = true
      for (const socket of sockets) socket.destroy()
      resolve(url)
    }
    if (pending === 0) return finish(undefined)
    for (const url of urls) {
      const {hostname, port} = new URL(url)
      const socket = connect({host: hostname, port: Number(port) || 80})
      sockets.push(socket)
      socket.setTimeout(PEER_CONNECT_TIMEOUT_MS)
      const failed = () => {
        socket.destroy()
        if (--pending === 0) finish(undefined)
      }
      socket.once('connect', () => finish(url))
      socket.once('timeout', failed)
      socket.once('error', failed)
    }
  })
}

/**
 * Streams an encrypted file to the endpoint an offer names, as postDirect()
 * posts a message; `progress` is told the bytes sent. The sender's own
 * connect timeout applies to each candidate; once connected, the transfer
 * takes what it takes.
 */
export async function postDirectFile(
  offer: PeerOffer,
  meta: DirectFileMeta,
  sealed: Uint8Array,
  progress: (bytes: number) => void = () => undefined,
): Promise<DirectResult> {
  const head = Buffer.from(JSON.stringify(meta))
  const length = Buffer.alloc(4)
  length.writeUInt32BE(head.length)
  const hash = createHash('sha256').update(length).update(head).update(sealed).digest()
  const proof = createHmac('sha256', offer.capability).update(hash).digest('hex')
  const url = await firstReachable(offer.urls)
  if (!url) return 'unreachable'
  const {request} = await undici()
  let answer
  try {
    answer = await request(new URL(PEER_FILES_PATH, url), {
      method: 'POST',
      dispatcher: await peerDispatcher(),
      headers: {'content-type': 'application/octet-stream', authorization: `Bearer ${offer.capability}`, 'content-length': String(4 + head.length + sealed.byteLength)},
      body: Readable.from(chunked([length, head, sealed], progress)),
      headersTimeout: PEER_FILE_ANSWER_TIMEOUT_MS,
      bodyTimeout: PEER_FILE_ANSWER_TIMEOUT_MS,
    })
  } catch {
    // Cut off: refused by its size before the body went (413, then closed), or the peer went away mid-way.
    return 'unreachable'
  }
  await answer.body.dump({limit: 16 * 1024}).catch(() => undefined)
  if (answer.statusCode === 413) return 'too-large'
  if (answer.statusCode === 429) return 'busy'
  return answer.statusCode === 202 && answer.headers[PEER_PROOF_HEADER] === proof ? 'direct' : 'refused'
}

/** The parts as one body of 256 KiB chunks, telling `progress` as each goes. */
async function* chunked(parts: Uint8Array[], progress: (bytes: number) => void): AsyncGenerator<Uint8Array> {
  for (const part of parts) {
    for (let at = 0; at < part.byteLength; at += 256 * 1024) {
      const chunk = part.subarray(at, at + 256 * 1024)
      yield chunk
      progress(chunk.byteLength)
    }
  }
}

/** A file that came in over the endpoint: its head, and the encrypted file. */
export interface DirectFileArrival {
  meta: DirectFileMeta
  sealed: Uint8Array
}

/** A message that came in over the endpoint, with the contact it came from. */
export type DirectArrival = DirectMessage

/**
 * The peer endpoint: two HTTP routes, POST PEER_MESSAGES_PATH and POST
 * PEER_FILES_PATH, for the contacts this client offered it to. Anything else,
 * a bad capability or a body that is not a direct message or file, is refused
 * before it is read any further; a good one is handed to `onMessage` or
 * `files.onFile` (which open and verify it) and answered 202 with the proof.
 */
export class PeerEndpoint {
  private readonly key = randomBytes(32)
  private server: Server | undefined
  /** Per contact: a flood of posts from one contact costs the others nothing (rate-limiter-flexible, in memory; made by listen()). */
  private posts: RateLimiterMemory | undefined
  /** Files being received: by contact. */
  private readonly receiving = new Map<string, number>()

  /**
   * `onMessage` (and `files.onFile`) open what came, and the endpoint answers
   * once they have settled: a 202 means the message was shown (or had been
   * already), so the sender's commit, which waits for the answer, cannot
   * overtake it. What they throw is theirs: the answer is the same.
   */
  constructor(
    private readonly onMessage: (message: DirectArrival) => Promise<void> | void,
    /** Files: where they go, and the largest taken (encrypted bytes; 0: none, refused with 413). */
    private readonly files: {onFile: (file: DirectFileArrival) => Promise<void> | void; maxBytes: number} = {onFile: () => undefined, maxBytes: 0},
  ) {}

  /** The capability a contact gets in its offer. */
  capabilityFor(contact: string): string {
    return base64url(createHmac('sha256', this.key).update(contact.toLowerCase()).digest())
  }

  /** Listens on `host` (all addresses by default) and `port` (0: a free one); resolves with the port. */
  async listen(host = '0.0.0.0', port = 0): Promise<number> {
    // A file may take minutes on a slow link: the whole request gets PEER_REQUEST_TIMEOUT_MS, but a connection that sends
    // nothing for PEER_IDLE_TIMEOUT_MS is closed, and headers must come within 5 s.
    const {RateLimiterMemory} = await import('rate-limiter-flexible')
    this.posts ??= new RateLimiterMemory({points: PEER_POSTS_PER_WINDOW, duration: PEER_POSTS_WINDOW_S})
    const server = createServer({requestTimeout: PEER_REQUEST_TIMEOUT_MS, headersTimeout: 5_000}, (req, res) => void this.handle(req, res))
    server.maxConnections = PEER_MAX_CONNECTIONS
    server.keepAliveTimeout = 30_000
    server.setTimeout(PEER_IDLE_TIMEOUT_MS)
    server.listen(port, host)
    await once(server, 'listening')
    this.server = server
    return (server.address() as AddressInfo).port
  }

  async close(): Promise<void> {
    const server = this.server
    this.server = undefined
    if (!server) return
    server.closeAllConnections()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const refuse = (status: number, title: string) => {
      res.writeHead(status, {'content-type': 'application/problem+json', connection: 'close'})
      res.end(JSON.stringify({type: 'about:blank', title, status}))
      req.resume()
    }
    const isFile = req.url === PEER_FILES_PATH
    if (req.method !== 'POST' || (req.url !== PEER_MESSAGES_PATH && !isFile)) return refuse(404, 'Not found')
    const token = /^Bearer ([A-Za-z0-9_-]{43})$/.exec(req.headers.authorization ?? '')?.[1]
    if (!token) return refuse(401, 'No capability')
    if (isFile) return this.file(req, res, token, refuse)
    if (Number(req.headers['content-length'] ?? 0) > PEER_BODY_MAX_BYTES) return refuse(413, 'Too large')
    const chunks: Buffer[] = []
    let size = 0
    try {
      for await (const chunk of req as AsyncIterable<Buffer>) {
        size += chunk.length
        if (size > PEER_BODY_MAX_BYTES) return refuse(413, 'Too large')
        chunks.push(chunk)
      }
    } catch {
      return
    }
    const body = Buffer.concat(chunks)
    const parsed = directMessage.safeParse(safeJson(body.toString('utf8')))
    if (!parsed.success) return refuse(400, 'Not a direct message')
    if (!this.holds(token, parsed.data.from)) return refuse(401, 'Wrong capability')
    if (!(await this.admit(parsed.data.from))) return refuse(429, 'Too many')
    await Promise.resolve(this.onMessage(parsed.data)).catch(() => undefined)
    res.writeHead(202, {[PEER_PROOF_HEADER]: proofOf(token, body), 'content-length': '0'})
    res.end()
  }

  /**
   * A file: its size checked against the limit before anything is read, its
   * head (and so the capability) before the file's bytes, which are then
   * read up to the announced length and handed on; the proof covers the body.
   */
  private async file(req: IncomingMessage, res: ServerResponse, token: string, refuse: (status: number, title: string) => void): Promise<void> {
    const length = Number(req.headers['content-length'])
    if (!Number.isSafeInteger(length) || length < 4) return refuse(411, 'Length required')
    if (length > this.files.maxBytes + META_MAX_BYTES + 4) return refuse(413, 'Too large')
    // The head first, in what arrives (at most META_MAX_BYTES and a chunk): nothing of the file's size is taken
    // before the capability and the contact's turn are checked.
    const pieces: Buffer[] = []
    /** What must have arrived before the head is looked at again: its length, then all of it (so it is joined at most twice). */
    let needed = 4
    let body: Buffer | undefined
    let size = 0
    let meta: DirectFileMeta | undefined
    let contact: string | undefined
    try {
      try {
        for await (const chunk of req as AsyncIterable<Buffer>) {
          if (size + chunk.length > length) return refuse(400, 'Longer than announced')
          if (body) {
            chunk.copy(body, size)
            size += chunk.length
            continue
          }
          pieces.push(chunk)
          size += chunk.length
          if (size < needed) continue
          const head = Buffer.concat(pieces)
          pieces.splice(0, pieces.length, head)
          const headLength = head.readUInt32BE(0)
          if (headLength > META_MAX_BYTES || 4 + headLength > length) return refuse(400, 'Not a direct file')
          if (size < 4 + headLength) {
            needed = 4 + headLength
            continue
          }
          const parsed = directFileMeta.safeParse(safeJson(head.subarray(4, 4 + headLength).toString('utf8')))
          if (!parsed.success) return refuse(400, 'Not a direct file')
          if (!this.holds(token, parsed.data.from)) return refuse(401, 'Wrong capability')
          const from = parsed.data.from.toLowerCase()
          const all = [...this.receiving.values()].reduce((sum, n) => sum + n, 0)
          if (all >= PEER_FILES_AT_ONCE || this.receiving.has(from)) return refuse(429, 'Too many')
          // Taken before anything is awaited: two posts of one contact cannot both pass the check above.
          contact = from
          this.receiving.set(contact, 1)
          if (!(await this.admit(from))) return refuse(429, 'Too many')
          meta = parsed.data
          body = Buffer.allocUnsafe(length)
          head.copy(body, 0)
        }
      } catch {
        return // the sender went away
      }
      if (size !== length || !meta || !body) return refuse(400, 'Shorter than announced')
      const sealed = body.subarray(4 + body.readUInt32BE(0))
      await Promise.resolve(this.files.onFile({meta, sealed})).catch(() => undefined)
      res.writeHead(202, {[PEER_PROOF_HEADER]: createHmac('sha256', token).update(sha256(body)).digest('hex'), 'content-length': '0'})
      res.end()
    } finally {
      if (contact) this.receiving.delete(contact)
    }
  }

  /** Whether a contact may post now (PEER_POSTS_PER_WINDOW). */
  private admit(contact: string): Promise<boolean> {
    if (!this.posts) return Promise.resolve(false)
    return this.posts.consume(contact.toLowerCase()).then(
      () => true,
      () => false,
    )
  }

  /** Whether `token` is the capability this endpoint gave `contact`. */
  private holds(token: string, contact: string): boolean {
    const expected = Buffer.from(this.capabilityFor(contact))
    const given = Buffer.from(token)
    return given.length === expected.length && timingSafeEqual(given, expected)
  }
}

/** This machine's addresses a contact could reach: every non-internal IPv4 one (IPv6 link-local ones need a zone, so none). */
export function localAddresses(): string[] {
  const addresses: string[] = []
  for (const list of Object.values(networkInterfaces())) {
    for (const entry of list ?? []) if (entry.family === 'IPv4' && !entry.internal) addresses.push(entry.address)
  }
  return addresses
}

/**
 * Offers: made for the pinned contacts and sent through the chat server, and
 * taken in from the stream (verified against the sender's pinned key) into
 * the profile, where any command of the profile finds them (`send`).
 */
export class PeerOffers {
  constructor(
    private readonly session: ChatSession,
    private readonly keys: KeyDirectory,
  ) {}

  /**
   * Offers `urls` to the pinned contacts (the most recently pinned first, at
   * most PEER_OFFER_CONTACTS_MAX), each signed and encrypted to that contact
   * only. Returns how many were sent.
   */
  async offer(endpoint: PeerEndpoint, urls: string[]): Promise<number> {
    const contacts = Object.entries(await this.session.store.contacts())
      .filter(([name]) => !this.session.isMe(name))
      .sort(([, a], [, b]) => (a.pinnedAt < b.pinnedAt ? 1 : -1))
      .slice(0, PEER_OFFER_CONTACTS_MAX)
    if (contacts.length === 0) return 0
    const key = await this.session.key()
    const expiresAt = new Date(Date.now() + PEER_OFFER_TTL_MS).toISOString()
    // How many devices I have: a contact sending me a file directly stores it on the server too when I have others.
    const devices = await this.session.withFailover((api) => api.devices()).then(
      (answer) => answer.devices.length,
      () => undefined,
    )
    const offers = await Promise.all(
      contacts.map(async ([name, contact]) => {
        const plaintext = {v: PEER_OFFER_VERSION, type: 'peer.offer', id: randomUUID(), to: name, urls, capability: endpoint.capabilityFor(name), expiresAt, ...(devices ? {devices} : {})}
        return {to: name, ciphertext: await encryptText({text: JSON.stringify(plaintext), to: [contact.publicKey], signer: key})}
      }),
    )
    for (let i = 0; i < offers.length; i += PEER_OFFERS_PER_REQUEST_MAX) {
      const chunk = offers.slice(i, i + PEER_OFFERS_PER_REQUEST_MAX)
      await this.session.withFailover((api) => api.postPeerOffers({offers: chunk}))
    }
    return offers.length
  }

  /** Takes in an offer event: kept (replacing the contact's older one) only when signed by its sender's pinned key, to me, and not expired. */
  async take(event: PeerOfferEvent): Promise<PeerOfferNotice> {
    const notice = (accepted: boolean, reason?: string, extra: Partial<PeerOfferNotice> = {}): PeerOfferNotice => ({
      type: 'peer.offer',
      id: `peer.offer:${event.seq}`,
      from: event.from,
      accepted,
      ...(reason ? {reason} : {}),
      ...extra,
    })
    // Only a contact already pinned (no key pinned on first use here: an offer from a stranger makes nobody a contact),
    // whose key has not changed since.
    const pinned = await this.keys.pinned(event.from)
    if (!pinned || pinned.changedTo !== undefined) return notice(false, 'not a pinned contact')
    const key = await this.session.key()
    let opened
    try {
      opened = await decryptText({armored: event.ciphertext, key, senderPublicKey: pinned.publicKey})
    } catch (error) {
      if (!(error instanceof CryptoError)) throw error
      return notice(false, `undecryptable: ${error.message}`)
    }
    if (opened.verification.status !== 'valid') return notice(false, 'not signed by its sender\'s pinned key')
    const parsed = offerPlaintext.safeParse(safeJson(opened.text))
    if (!parsed.success) return notice(false, 'not a FastChat peer offer')
    const offer = parsed.data
    if (!same(offer.to, this.session.username)) return notice(false, `written to ${offer.to}, not to you`)
    if (Date.parse(offer.expiresAt) <= Date.now()) return notice(false, 'expired')
    await this.session.store.updatePeers((book) => {
      book.offers[event.from.toLowerCase()] = {
        id: offer.id,
        from: event.from,
        urls: offer.urls,
        capability: offer.capability,
        expiresAt: offer.expiresAt,
        ...(offer.devices ? {devices: offer.devices} : {}),
      }
    })
    return notice(true, undefined, {expiresAt: offer.expiresAt, candidates: offer.urls.length})
  }

  /** A contact's offer to use now: fresh, and not found unreachable or wrong. */
  async usable(contact: string, book?: PeerBook): Promise<PeerOffer | undefined> {
    book ??= await this.session.store.peers()
    const offer = Object.hasOwn(book.offers, contact.toLowerCase()) ? book.offers[contact.toLowerCase()] : undefined
    if (!offer || offer.failed || Date.parse(offer.expiresAt) <= Date.now()) return undefined
    return offer
  }

  /** After a post that failed: the pair uses the servers until the contact's next offer (the same offer is never tried again). */
  async failed(offer: PeerOffer, result: 'unreachable' | 'refused'): Promise<void> {
    await this.session.store.updatePeers((book) => {
      const stored = book.offers[offer.from.toLowerCase()]
      if (stored?.id === offer.id) stored.failed = result
    })
  }
}
