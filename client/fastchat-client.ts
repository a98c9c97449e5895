import {randomUUID} from 'node:crypto'
import {setTimeout as sleep} from 'node:timers/promises'

import {encryptText, formatFingerprint, generateKeyPair, normalizeFingerprint, readPublicKey, unlockPrivateKey} from '../crypto/index.js'
import {password as passwordSchema, username as usernameSchema} from '../protocol/primitives.js'
import {ApiClient, type ApiError, type Device, type GroupInvitation, type GroupSummary, type HistoryMessage, isFailoverError} from './api-client.js'
import {approveLink, findDevice, PendingLink} from './devices.js'
import {Directory} from './directory.js'
import {FastChatError} from './errors.js'
import {EventTransport, type TransportMode} from './event-stream.js'
import {EventSync, type SyncItem} from './event-sync.js'
import {readFileToSend, sendFile} from './file-send.js'
import {changeMembership, createOnce, keyAfterChange, userArg} from './group-changes.js'
import type {KeyedGroup} from './group-rekey.js'
import {GroupEventResponder} from './group-events.js'
import {sendToGroup} from './group-send.js'
import {type GroupRef, isGroupId} from './group-targets.js'
import {newBinding, packText} from './message-content.js'
import type {MessageGroup} from './opened.js'
import type {ProgressFactory} from './progress.js'
import {type OpenedMessage, MessageOpener} from './receive.js'
import {MAX_BLOB_BYTES, type ReceiveFilesOptions} from './file-receive.js'
import {closePeerConnections, DIRECT_HEAD_START_MS, PEER_CHECK_MS, type DirectFileArrival, type DirectMessage, type DirectResult, loadDirectTransport, localAddresses, PEER_OFFER_TTL_MS, PeerEndpoint, PeerOffers, postDirect} from './peer.js'
import {READ_RECEIPTS_BATCH_MS, Receipts} from './receipts.js'
import type {Report, Reporter} from './reports.js'
import {assign, ChatSession, type PassphraseProvider, superserverUrl, withFailover} from './session.js'
import {type MyPresence, PRESENCE_QUERY_MAX_USERS, type PresenceEntry} from '../protocol/presence.js'
import {type Contacts, OUTBOX_MAX, type Profile, type QueuedSend, requireKeys, type Store} from './store.js'
import {assertTextFits} from './text-limit.js'
import type {KeyForSending} from './trust.js'

/**
 * The client library's front door (DESIGN.md section 7): what the CLI, the
 * daemon and any program do with FastChat, end to end encrypted, with no
 * terminal in sight. It prints nothing and exits nothing; it throws
 * FastChatError (a code and data); what it has to tell besides its results
 * goes to `onReport` as data (./reports.ts).
 *
 *     const client = await FastChatClient.open({store, passphrase: async () => process.env.PASS!})
 *     await client.send('bob', 'hello')
 *     for await (const item of client.messages()) if (isMessage(item)) console.log(item.from, item.text)
 */

export interface ClientOptions {
  store: Store
  /** Asked once, when the private key is first needed. */
  passphrase: PassphraseProvider
  /** Notices: keys pinned on first use, cursor resets, skipped events, connection lost and back. Ignored by default. */
  onReport?: Reporter
  /** Where and how received files are saved; without it files are listed, not downloaded. */
  files?: ReceiveFilesOptions
}

export interface AccountOptions extends ClientOptions {
  username: string
  password: string
  /** The superserver's URL; default: the profile's, else FASTCHAT_SUPERSERVER, else http://127.0.0.1:4000. */
  superserver?: string
}

export interface AccountDeviceOption {
  /** This device's name in `device list` (default: the server's, "unnamed"); the server appends " (2)"... when taken. */
  device?: string
}

export interface RegisterOptions extends AccountOptions {
  /** For a new key pair: the passphrase it is encrypted with (at least 8 characters). Not asked when the store already has keys. */
  newPassphrase: PassphraseProvider
}

export interface Sent {
  id: string
  sentAt: string
  /** A username, or `group:<id>`. */
  to: string
  /** For a group: which, and the key epoch the message was encrypted under. */
  group?: MessageGroup
  /** Members in the group at the time (for a group message). */
  members?: number
  /**
   * The paths that carried a 1:1 text (./peer.ts): `server` once committed (a
   * 201), `direct` when the recipient's peer endpoint took it too. Only
   * `direct` means no server answered: it is queued and committed later.
   */
  via?: ('direct' | 'server')[]
  /** Why the direct path was not used, when the recipient has an offer: `unreachable` or `refused` (not tried again for that offer). */
  direct?: Exclude<DirectResult, 'direct'>
  /** Delivered directly while no server answered: kept in the profile and committed when one does. */
  queued?: true
  /** The id its sender signed (a 1:1 text or file): the same on the direct path and the server's, and the send's idempotency key. */
  signedId?: string
}

export interface SentFileResult extends Omit<Sent, 'direct'> {
  /** The server's copy of the encrypted file; null when it went only directly. */
  blob: string | null
  direct?: Exclude<DirectResult, 'direct'>
  name: string
  type: string
  size: number
}

/** What `messages()` hands out: a decrypted, verified message, or a group event. */
export type Received = SyncItem

/** A message, not a group event. */
export const isMessage = (item: Received): item is OpenedMessage => 'kind' in item

export interface MessagesOptions {
  /** Ends the iteration (and any poll in flight). */
  signal?: AbortSignal
  /** Keep waiting for new messages forever (true, the default), or end once the stream has nothing more (an inbox). */
  follow?: boolean
  /** How long each long poll waits, in ms; with follow: false, only the first one waits. Default 30,000 (0 without follow). */
  waitMs?: number
  /**
   * With follow: how events are read. `auto` (the default): the event
   * stream (SSE), falling back to the long poll by itself when the stream
   * cannot be opened or carries nothing (a proxy that buffers it), and trying
   * the stream again `streamRetryMs` later. `stream`: only the stream;
   * `poll`: only the long poll. Without follow, always the long poll.
   * Reported as `transport` when chosen or changed.
   */
  transport?: TransportMode
  /** How long a stream may carry nothing (no event, no heartbeat) before it is taken as dead: default the server's heartbeat (15 s) + 5 s. */
  streamIdleMs?: number
  /** After a fall back to the long poll, try the stream again this long after. Default 10 minutes. */
  streamRetryMs?: number
  /** Send read receipts for the messages handed out (client/receipts.ts); default: the profile's setting (on unless turned off). */
  readReceipts?: boolean
  /**
   * With follow: open a peer endpoint (./peer.ts) on this address (default
   * all of this machine's) and port (default a free one), and offer it to the
   * pinned contacts; messages that come by it are handed out with
   * `via: 'direct'`, and the others with `via: 'server'`.
   */
  peer?: {host?: string; port?: number}
}

/** Each long poll waits this long: under the 60 s idle timeout of common proxies, and the server's default. */
export const LONG_POLL_MS = 30_000
/** Reconnection backoff: quick for a server switch, capped so a long outage costs at most 5 s once it ends. */
export const BACKOFF_START_MS = 200
export const BACKOFF_MAX_MS = 5_000

export function checkUsername(username: string): void {
  const result = usernameSchema.safeParse(username)
  if (!result.success) throw new FastChatError('FC_VALIDATION', `The username ${username} is not valid: it ${result.error.issues[0]?.message ?? 'is not valid'}.`, {field: 'username'})
}

export function checkPassword(password: string): void {
  const result = passwordSchema.safeParse(password)
  if (!result.success) throw new FastChatError('FC_VALIDATION', `The password ${result.error.issues[0]?.message ?? 'is not valid'}.`, {field: 'password'})
}

export class FastChatClient {
  readonly directory: Directory
  /** Receipts of my messages, and read receipts for others' (./receipts.ts). */
  readonly receipts: Receipts
  /** Contacts' peer offers, and mine (./peer.ts). */
  readonly peers: PeerOffers
  private readonly report: Reporter

  private constructor(
    readonly session: ChatSession,
    private readonly options: ClientOptions,
  ) {
    this.directory = new Directory(session)
    this.report = options.onReport ?? (() => undefined)
    this.receipts = new Receipts(session, this.directory.keys, this.report)
    this.peers = new PeerOffers(session, this.directory.keys)
  }

  /** The account already logged in in `store`. */
  static async open(options: ClientOptions): Promise<FastChatClient> {
    return new FastChatClient(await ChatSession.open(options.store, options.passphrase), options)
  }

  /**
   * Creates the account: a key pair (or the one already in the store, from
   * `keys generate`), the user on a chat server the superserver assigns, and
   * a session. Input is checked before anything else is asked or sent.
   */
  static async register(options: RegisterOptions & AccountDeviceOption): Promise<FastChatClient> {
    const {store, username, password} = options
    checkUsername(username)
    checkPassword(password)
    const existing = await store.profile()
    if (existing?.username) throw new FastChatError('FC_PROFILE_IN_USE', `This profile (${store.location}) already belongs to ${existing.username}.`, {location: store.location, username: existing.username})
    const superserver = superserverUrl(options.superserver)
    // Ask for a server first: no point making a key (and asking for a passphrase) if no server is up.
    let client = new ApiClient(await assign(superserver))
    const keys = await keyPair(options)
    const remember = (url: string) => void (client = client.withServer(url))
    const registered = await withFailover({superserver, client}, (api) => api.register({username, password, publicKey: keys.publicKey}), remember).catch(
      async (error: {code?: string}) => {
        if (error.code !== 'FC_USERNAME_TAKEN') throw error
        // A retry after a lost answer finds the name taken by its own first try: ours if it holds our key.
        if (await holdsKey(client, username, password, keys.fingerprint)) return {username}
        throw new FastChatError('FC_USERNAME_TAKEN', `The username ${username} is taken.`, {username})
      },
    )
    // The account exists from here on: keep the key first, so a failed login can simply be retried with login().
    await store.saveKeys(keys)
    await loginTo(store, {superserver, client, remember}, registered.username, password, keys.fingerprint, options.device)
    return FastChatClient.open(options)
  }

  /**
   * Logs in with the key pair already in the store. `keyMatches` is false when
   * the server publishes another key for the user than the store's (messages
   * to them cannot be read here), null when it could not be checked.
   */
  static async login(options: AccountOptions & AccountDeviceOption): Promise<{client: FastChatClient; keyMatches: boolean | null}> {
    const {store, username, password} = options
    const existing = await store.profile()
    if (existing?.username && existing.username.toLowerCase() !== username.toLowerCase()) {
      throw new FastChatError('FC_PROFILE_IN_USE', `This profile (${store.location}) belongs to ${existing.username}.`, {location: store.location, username: existing.username})
    }
    const local = await readPublicKey((await requireKeys(store)).publicKey)
    const superserver = superserverUrl(options.superserver, existing)
    let client = new ApiClient(await assign(superserver))
    const remember = (url: string) => void (client = client.withServer(url))
    const profile = await loginTo(store, {superserver, client, remember}, username, password, local.fingerprint, options.device).catch((error: unknown) => {
      if ((error as {status?: number}).status === 401) throw new FastChatError('FC_WRONG_PASSWORD', 'Wrong username or password.', {username})
      throw error
    })
    // The new session replaces this profile's old one (ended, best effort, once the new one works), so re-logins do not pile up devices.
    if (existing?.token && existing.token !== profile.token) await new ApiClient(existing.server, existing.token).logout().catch(() => undefined)
    // Messages to us are encrypted to the key the server publishes: if it is not ours, we cannot read them.
    const published = await new ApiClient(profile.server, profile.token).user(profile.username).catch(() => undefined)
    const keyMatches = published ? (await readPublicKey(published.publicKey).catch(() => undefined))?.fingerprint === local.fingerprint : null
    return {client: await FastChatClient.open(options), keyMatches}
  }

  get username(): string {
    return this.session.username
  }

  get profile(): Profile {
    return this.session.profile
  }

  /**
   * Sends a text to a user (`bob`, `@bob`) or a group (its id, `#name`, or a
   * bare name that is one of your groups). Encrypted to the recipient and to
   * you, signed, sent once whatever the failovers (its id is the idempotency key).
   */
  async send(to: string, text: string): Promise<Sent> {
    let recipient: KeyForSending
    try {
      const target = await this.directory.groups.target(to, this.directory.keys)
      if (target.kind === 'group') return this.toGroup(target.group, {kind: 'text', text})
      recipient = await this.recipient(target.username)
    } catch (error) {
      // No server to look the name up: a pinned contact with a fresh offer can still be written to, directly.
      const offline = isFailoverError(error) ? await this.offlineRecipient(to) : undefined
      if (!offline) throw error
      recipient = offline
    }
    const key = await this.session.key()
    const binding = newBinding({user: recipient.username})
    const ciphertext = await encryptText({text: packText(binding, text), to: [recipient.publicKey, key.publicKey], signer: key})
    assertTextFits(ciphertext, recipient.username)
    // Both ways at once (docs/architecture.md, "Delivery paths"): the server commits it (a 201 means durable), and the
    // recipient's peer endpoint, when it offered one, gets the same signed ciphertext; the recipient shows the first.
    // One read of the profile's peer book for both: the contact's offer, and what waits to be committed.
    const book = await this.session.store.peers()
    const offer = await this.peers.usable(recipient.username, book)
    if (offer) await loadDirectTransport()
    const direct = offer ? postDirect(offer, {from: this.session.username, to: {user: recipient.username}, kind: 'text', ciphertext}) : undefined
    // On the server, what went only directly earlier goes first (history keeps the order); if no server takes it, none
    // will take this one now.
    const flushed = await this.flushOutbox(book.outbox)
    // The direct copy gets a head start: the commit begins once the recipient's endpoint has it (on a LAN, a
    // millisecond or two) or DIRECT_HEAD_START_MS later, so that where both paths work the direct one is seen first.
    if (direct) await Promise.race([direct, sleep(DIRECT_HEAD_START_MS)])
    let sent: {id: string; sentAt: string} | undefined
    let failure: unknown
    try {
      if (flushed.unreachable && direct) throw flushed.unreachable
      sent = await this.session.withFailover((api) => api.send({to: {user: recipient.username}, kind: 'text', ciphertext}, binding.id))
    } catch (error) {
      failure = error
    }
    const path = await direct
    if (offer && (path === 'unreachable' || path === 'refused')) await this.peers.failed(offer, path)
    if (!sent) {
      // No server answered, but the recipient has it: kept, and committed with the same idempotency key when one answers.
      if (path !== 'direct' || !isFailoverError(failure)) throw failure
      const outbox = await this.session.store.peers()
      if (outbox.outbox.length >= OUTBOX_MAX) throw failure
      await this.session.store.updatePeers((book) => {
        book.outbox.push({to: recipient.username, ciphertext, idempotencyKey: binding.id, queuedAt: new Date().toISOString()})
      })
      return {id: binding.id, sentAt: binding.sentAt, to: recipient.username, via: ['direct'], queued: true, signedId: binding.id}
    }
    await this.receipts.recordSent(sent.id, recipient.username)
    return {
      id: sent.id,
      sentAt: sent.sentAt,
      to: recipient.username,
      via: path === 'direct' ? ['direct', 'server'] : ['server'],
      ...(path && path !== 'direct' ? {direct: path} : {}),
      signedId: binding.id,
    }
  }

  /**
   * Commits the messages that went only directly while no server answered,
   * oldest first, each with its original idempotency key (stored once however
   * often this runs). Stops at the first that fails to reach a server; one the
   * server refuses (the recipient gone, blocked) is dropped, reported.
   */
  async flushOutbox(outbox?: QueuedSend[]): Promise<{committed: number; unreachable?: unknown}> {
    outbox ??= (await this.session.store.peers()).outbox
    let committed = 0
    for (const queued of outbox) {
      try {
        const sent = await this.session.withFailover((api) => api.send({to: {user: queued.to}, kind: 'text', ciphertext: queued.ciphertext}, queued.idempotencyKey))
        await this.receipts.recordSent(sent.id, queued.to)
        committed++
      } catch (error) {
        if (isFailoverError(error)) return {committed, unreachable: error}
        this.report({type: 'outbox.dropped', to: queued.to, reason: (error as Error).message})
      }
      await this.session.store.updatePeers((book) => {
        book.outbox = book.outbox.filter((entry) => entry.idempotencyKey !== queued.idempotencyKey)
      })
    }
    return {committed}
  }

  /** Sends a file (a path, or name, type and bytes), with an optional caption. */
  async sendFile(
    to: string,
    file: string | {name: string; type: string; data: Uint8Array},
    options: {caption?: string; progress?: ProgressFactory} = {},
  ): Promise<SentFileResult> {
    const content = typeof file === 'string' ? await readFileToSend(file) : file
    const target = await this.directory.groups.target(to, this.directory.keys)
    if (target.kind === 'group') {
      const sent = await this.toGroup(target.group, {kind: 'image', file: content, caption: options.caption, progress: options.progress})
      return {...sent, blob: sent.blob!, name: content.name, type: content.type, size: content.data.byteLength}
    }
    const recipient = await this.recipient(target.username)
    const offer = await this.peers.usable(recipient.username)
    const sent = await sendFile(this.session, {file: content, recipient, caption: options.caption, progress: options.progress, ...(offer ? {offer} : {})})
    if (offer && (sent.direct === 'unreachable' || sent.direct === 'refused')) await this.peers.failed(offer, sent.direct)
    await this.receipts.recordSent(sent.id, recipient.username)
    return {...sent, to: recipient.username}
  }

  /**
   * The event stream from the stored cursor, decrypted and verified: each
   * message and group event once, in order (DESIGN.md section 2). The cursor
   * moves only after the consumer has taken a page's items (the loop body ran
   * for each): a crash or a `break` shows them again, never loses them. A
   * failed server is replaced by another from the superserver; with `follow`
   * the stream goes on through outages (reported as connection.lost and
   * connection.restored), without it a failure is thrown.
   */
  async *messages(options: MessagesOptions = {}): AsyncGenerator<Received, void, undefined> {
    const follow = options.follow ?? true
    const opener = new MessageOpener(this.session, this.options.files, this.directory)
    // An inbox (no follow) wants what is there now: a poll that answers at once, not a stream to open.
    const {transport: mode, streamIdleMs, streamRetryMs} = options
    const transport = follow ? new EventTransport(this.report, {mode, streamIdleMs, streamRetryMs}) : undefined
    const receipts = {
      handler: this.receipts,
      read: options.readReceipts ?? this.session.profile.readReceipts !== false,
      ...(follow ? {soonMs: READ_RECEIPTS_BATCH_MS} : {}),
    }
    const sync = new EventSync(this.session, opener, this.report, new GroupEventResponder(this.directory, this.report), undefined, transport, receipts, this.peers)
    const inbox = new DirectInbox()
    const sink: DirectSink = {claim: (signedId, copy) => sync.claimDirect(signedId, copy), show: (message) => inbox.push(message)}
    const endpoint = follow && options.peer ? await this.openPeerEndpoint(options.peer, sink, opener, maxDirectFileBytes(this.options.files)) : undefined
    try {
      yield* this.readFrom(sync, options, endpoint ? inbox : undefined)
    } finally {
      transport?.close()
      await endpoint?.close()
      await this.receipts.flushQueued()
    }
  }

  /**
   * Opens a peer endpoint and offers it to the pinned contacts (again when the
   * candidates change, and at half an offer's life); what comes by it is
   * opened and verified as a server-delivered message, claimed by its signed
   * id (`sink.claim`: EventSync.claimDirect for messages(), the daemon's feed
   * for the daemon) and handed to `sink.show`. Undefined when it cannot
   * listen (reported as peer.failed): the servers carry everything.
   */
  async openPeerEndpoint(where: {host?: string; port?: number}, sink: DirectSink, opener: MessageOpener, maxFileBytes: number): Promise<{close(): Promise<void>} | undefined> {
    // Settled before the endpoint answers (the sender's commit waits for that): shown, or dropped (a failed key lookup, a
    // copy shown already), and then the server's copy stands.
    const show = (opening: Promise<OpenedMessage | undefined>): Promise<void> =>
      opening
        .then(async (opened) => {
          if (opened) await sink.show(opened)
        })
        .catch(() => undefined)
    const endpoint = new PeerEndpoint((message) => show(this.openDirect(message, sink, opener)), {
      onFile: (file) => show(this.openDirectFile(file, sink, opener)),
      maxBytes: maxFileBytes,
    })
    let timer: NodeJS.Timeout | undefined
    const close = async () => {
      clearInterval(timer)
      await endpoint.close()
      await closePeerConnections()
    }
    let port: number
    const host = where.host ?? '0.0.0.0'
    try {
      port = await endpoint.listen(host, where.port ?? 0)
    } catch (error) {
      this.report({type: 'peer.failed', reason: (error as Error).message})
      await close()
      return undefined
    }
    // Offered again when the candidates change (checked every PEER_CHECK_MS: a new network, a new public address), and
    // at half an offer's life. A failure (no server) is reported once, and the endpoint stays open for the next try.
    let offered: {urls: string; at: number} | undefined
    let seen: string[] = []
    let failing = false
    const refresh = async () => {
      seen = await this.session.withFailover((api) => api.myAddress()).then(
        (answer) => [answer.address],
        () => seen,
      )
      const addresses = host === '0.0.0.0' ? localAddresses() : [host]
      const urls = [...new Set([...addresses, ...seen])].filter((address) => /^\d+\.\d+\.\d+\.\d+$/.test(address)).slice(0, 16).map((address) => `http://${address}:${port}`)
      if (offered?.urls === urls.join(' ') && Date.now() - offered.at < PEER_OFFER_TTL_MS / 2) return
      try {
        const count = urls.length > 0 ? await this.peers.offer(endpoint, urls) : 0
        offered = {urls: urls.join(' '), at: Date.now()}
        failing = false
        this.report({type: 'peer.listening', urls, offered: count})
      } catch (error) {
        if (!failing) this.report({type: 'peer.failed', reason: `could not offer the endpoint yet: ${(error as Error).message}`})
        failing = true
      }
    }
    await refresh()
    timer = setInterval(() => void refresh(), PEER_CHECK_MS)
    timer.unref()
    return {close}
  }

  /** A message that came by the peer endpoint, opened and verified as a server-delivered one; undefined when it is not to be shown. */
  private async openDirect(message: DirectMessage, sink: DirectSink, opener: MessageOpener): Promise<OpenedMessage | undefined> {
    if (!this.session.isMe(message.to.user)) return undefined
    const opened = await opener.open({id: randomUUID(), from: message.from, to: {user: message.to.user}, kind: 'text', ciphertext: message.ciphertext, sentAt: new Date().toISOString()})
    // Only what its sender's pinned key signed, for this conversation, with an id to match its server copy by.
    if (opened.verification.status !== 'valid' || opened.signedId === undefined) return undefined
    const shown: OpenedMessage = {...opened, id: opened.signedId, via: 'direct'}
    if (!(await sink.claim(opened.signedId, {ciphertext: message.ciphertext, message: shown}))) return undefined
    return shown
  }

  /** A file that came by the peer endpoint: saved as a downloaded one, once (its signed id claimed before it is written). */
  private async openDirectFile(file: DirectFileArrival, sink: DirectSink, opener: MessageOpener): Promise<OpenedMessage | undefined> {
    const {meta, sealed} = file
    if (!this.session.isMe(meta.to.user)) return undefined
    const message = {id: randomUUID(), from: meta.from, to: {user: meta.to.user}, kind: 'image' as const, ciphertext: meta.caption, sentAt: new Date().toISOString()}
    const opened = await opener.open(message, {sealed, claim: (signedId) => sink.claim(signedId)})
    if (opened.verification.status !== 'valid' || opened.signedId === undefined) return undefined
    return {...opened, id: opened.signedId, via: 'direct'}
  }

  /** messages()' loop: pages read, their items handed out, then committed; outages ridden out with `follow`. */
  private async *readFrom(sync: EventSync, options: MessagesOptions, direct?: DirectInbox): AsyncGenerator<Received, void, undefined> {
    const follow = options.follow ?? true
    const {signal} = options
    let waitMs = options.waitMs ?? (follow ? LONG_POLL_MS : 0)
    let backoff = BACKOFF_START_MS
    let lost = false
    let pending: Promise<Awaited<ReturnType<EventSync['read']>>> | undefined
    while (!signal?.aborted) {
      let batch
      try {
        // After an outage the first poll does not wait: it tells at once whether the server is back.
        pending ??= follow ? sync.read(lost ? 0 : waitMs, signal) : this.session.withFailover(() => sync.read(waitMs, signal))
        if (direct) {
          // What comes directly is handed out while the poll waits; the poll goes on (it is not asked again).
          const first = await Promise.race([pending.then(() => 'poll', () => 'poll'), direct.arrival()])
          if (first === 'direct') {
            for (const item of direct.take()) yield item
            continue
          }
        }
        batch = await pending
        pending = undefined
        if (!follow && batch.result.events === 0 && !batch.result.reset) return
      } catch (error) {
        pending = undefined
        if (signal?.aborted) return
        if (!follow || !isFailoverError(error)) throw error
        if (!lost) this.report({type: 'connection.lost', server: this.session.profile.server, reason: (error as Error).message})
        lost = true
        // While the servers are away, what comes directly is still handed out.
        await (direct ? Promise.race([sleep(backoff, undefined, {signal}), direct.arrival()]) : sleep(backoff, undefined, {signal})).catch(() => undefined)
        if (direct) for (const item of direct.take()) yield item
        backoff = Math.min(backoff * 2, BACKOFF_MAX_MS)
        // The superserver may be down too: then the next round retries where we were.
        if (!signal?.aborted) await this.session.failover().catch(() => undefined)
        continue
      }
      if (lost) this.report({type: 'connection.restored', server: this.session.profile.server})
      lost = false
      backoff = BACKOFF_START_MS
      const before = sync.cursor
      for (const item of batch.items) yield direct && isMessage(item) ? {...item, via: 'server' as const} : item
      await batch.commit()
      // Messages that went only directly while no server answered: committed now that one does.
      if (direct && (await this.session.store.peers()).outbox.length > 0) await this.flushOutbox().catch(() => undefined)
      if (!follow) {
        // Events that do not move the cursor (a broken or hostile server) would keep an inbox going forever.
        if (!batch.result.reset && sync.cursor === before) return
        if (batch.result.events > 0) waitMs = 0
      }
    }
  }

  /** The position in the event stream: the seq of the last event taken. */
  async cursor(): Promise<number> {
    return (await this.session.store.state()).cursor
  }

  /**
   * The latest `limit` messages with a user or a group, oldest first,
   * decrypted and verified; a signed message stored twice is shown once.
   * `files`: how this call saves files, instead of the client's (the daemon
   * serves several commands, each with its own --download).
   */
  async history(
    peer: string,
    options: {limit?: number; files?: ReceiveFilesOptions; readReceipts?: boolean} = {},
  ): Promise<{with: {kind: 'user'; username: string} | {kind: 'group'; group: GroupRef}; messages: OpenedMessage[]}> {
    const limit = options.limit ?? 20
    const target = await this.directory.groups.target(peer, this.directory.keys)
    const id = target.kind === 'group' ? target.group.id : target.username
    const newestFirst: HistoryMessage[] = []
    let before: string | undefined
    while (newestFirst.length < limit) {
      const page = await this.session.withFailover((api) => api.conversation(id, Math.min(HISTORY_PAGE_MAX, limit - newestFirst.length), before))
      for (const {error} of page.rejected) this.report({type: 'message.skipped', reason: error.message})
      newestFirst.push(...page.messages)
      if (!page.next || page.messages.length === 0) break
      before = page.next
    }
    const opener = new MessageOpener(this.session, options.files ?? this.options.files, this.directory)
    const messages: OpenedMessage[] = []
    const signedIds = new Set<string>()
    for (const message of newestFirst.reverse()) {
      const opened = await opener.open(message)
      if (opened.signedId !== undefined && signedIds.has(opened.signedId)) continue
      if (opened.signedId !== undefined) signedIds.add(opened.signedId)
      messages.push(opened)
    }
    await this.markReceipts(messages, target.kind === 'group' ? target.group.id : undefined)
    // Shown: the messages of others not answered yet get their read receipts (unless turned off).
    if (options.readReceipts ?? this.session.profile.readReceipts !== false) await this.receipts.acknowledge(messages)
    return {with: target.kind === 'group' ? {kind: 'group', group: target.group} : {kind: 'user', username: target.username}, messages}
  }

  /**
   * Sends a text (as send()), then waits up to `timeoutMs` for its receipt:
   * `delivered` (a read receipt counts too) or `read`. The stream is read
   * from the stored cursor without moving it or acknowledging anything, so
   * `inbox` still shows what arrived meanwhile. `receipt` is undefined on timeout.
   */
  async sendAndWait(to: string, text: string, wait: {status: 'delivered' | 'read'; timeoutMs: number; signal?: AbortSignal}): Promise<Sent & {receipt?: {status: 'delivered' | 'read'; by: string}}> {
    // Before sending: the receipt lands after it in the stream, however fast the recipient.
    const cursor = await this.cursor()
    const sent = await this.send(to, text)
    const receipt = await this.receipts.waitFor(sent.id, wait.status, cursor, wait.timeoutMs, wait.signal)
    return {...sent, ...(receipt ? {receipt} : {})}
  }

  /**
   * History's marks on my own messages: the receipts recorded in the store,
   * after taking in those still waiting in my stream (Receipts.catchUp: the
   * messages there stay new for `inbox`).
   */
  private async markReceipts(messages: OpenedMessage[], groupId: string | undefined): Promise<void> {
    const mine = messages.filter((message) => this.session.isMe(message.from))
    if (mine.length === 0) return
    await this.receipts.catchUp((await this.session.store.state()).cursor)
    const log = await this.session.store.receipts()
    // A group I left no longer answers: the counts go without "of M" then.
    const members = groupId ? await this.session.withFailover((api) => api.group(groupId)).then((group) => group.members.length - 1, () => undefined) : undefined
    for (const message of mine) {
      const deliveredTo = Object.hasOwn(log.delivered, message.id) ? log.delivered[message.id]! : []
      const readBy = Object.hasOwn(log.read, message.id) ? log.read[message.id]! : []
      message.status = readBy.length > 0 ? 'read' : deliveredTo.length > 0 ? 'delivered' : 'sent'
      message.receipts = {deliveredTo, readBy, ...(members === undefined ? {} : {members: Math.max(members, 0)})}
    }
  }

  /** My groups: name, id, my role, how many members, the current key epoch. */
  groups(): Promise<GroupSummary[]> {
    return this.directory.groups.mine()
  }

  /**
   * Creates a group with me as its admin, and makes its first key (wrapped
   * to each member's pinned key; members never written to are pinned now and
   * reported as key.pinned). Sent once across failovers.
   */
  async createGroup(name: string, members: string[]): Promise<KeyedGroup> {
    const unique = [...new Set(members.map(userArg))]
    const created = await createOnce(this.session, (api) => api.createGroup({name, members: unique}))
    return this.keyed(await keyAfterChange(this.directory, created.id, `Created ${created.name} (${created.id})`))
  }

  /**
   * Invites a user (admins only): they become a member, and a new epoch is
   * keyed that they can read, only when they join (joinGroup). The group as
   * it stands is returned, its invitations in `invited`.
   */
  async addMember(group: string, username: string): Promise<KeyedGroup> {
    const ref = await this.directory.groups.resolve(group)
    const user = userArg(username)
    const done = (error: ApiError) => error.code === 'FC_ALREADY_INVITED' || error.code === 'FC_ALREADY_GROUP_MEMBER'
    await changeMembership(this.session, (api) => api.addGroupMember(ref.id, user), done)
    return this.keyed(await keyAfterChange(this.directory, ref.id, `Invited ${user} to ${ref.name ?? ref.id}`))
  }

  /** My open group invitations, oldest first. */
  async invitations(): Promise<GroupInvitation[]> {
    return (await this.session.withFailover((api) => api.invitations())).invitations
  }

  /**
   * Accepts an invitation (`group`: the group's id, or a name unique among my
   * invitations): I become a member, and this client keys the new epoch,
   * the first I can read. A retry that finds me a member is not an error.
   */
  async joinGroup(group: string): Promise<KeyedGroup> {
    const ref = await this.invitedTo(group)
    await changeMembership(this.session, (api) => api.joinGroup(ref.id), (error) => error.code === 'FC_ALREADY_GROUP_MEMBER')
    this.directory.groups.learn(ref.id, ref.name ?? ref.id)
    return this.keyed(await keyAfterChange(this.directory, ref.id, `Joined ${ref.name ?? ref.id}`))
  }

  /** Refuses an invitation; nobody is told, the invitation just ends. A retry that finds none is not an error. */
  async declineGroup(group: string): Promise<GroupRef> {
    const ref = await this.invitedTo(group)
    await changeMembership(this.session, (api) => api.declineGroup(ref.id), (error) => error.code === 'FC_NOT_INVITED')
    return ref
  }

  /** A group I am invited to, by id or by a name unique among my invitations. */
  private async invitedTo(text: string): Promise<GroupRef> {
    const raw = text.startsWith('#') ? text.slice(1) : text
    const invitations = await this.invitations()
    if (isGroupId(raw)) {
      const id = raw.toLowerCase()
      return {id, name: invitations.find((invitation) => invitation.group === id)?.name ?? null}
    }
    const matches = invitations.filter((invitation) => invitation.name === raw)
    if (matches.length > 1) {
      const ids = matches.map((invitation) => invitation.group)
      throw new FastChatError('FC_AMBIGUOUS_GROUP', `${matches.length} of your invitations are to groups named ${raw}: ${ids.join(', ')}.`, {name: raw, ids})
    }
    const [match] = matches
    if (!match) throw new FastChatError('FC_NOT_INVITED', `You have no invitation to a group named ${raw}.`, {name: raw})
    return {id: match.group, name: match.name}
  }

  /** Removes a member (admins only; anyone may remove themselves: leaveGroup) and keys the new epoch without them. */
  async removeMember(group: string, username: string): Promise<KeyedGroup> {
    const ref = await this.directory.groups.resolve(group)
    const user = userArg(username)
    await changeMembership(this.session, (api) => api.removeGroupMember(ref.id, user), (error) => error.code === 'FC_GROUP_MEMBER_NOT_FOUND')
    return this.keyed(await keyAfterChange(this.directory, ref.id, `Removed ${user} from ${ref.name ?? ref.id}`))
  }

  /** Leaves a group; a retry after a lost answer that finds us gone (or the group deleted) is not an error. */
  async leaveGroup(group: string): Promise<GroupRef> {
    const ref = await this.directory.groups.resolve(group)
    const gone = (code: string) => code === 'FC_NOT_GROUP_MEMBER' || code === 'FC_GROUP_NOT_FOUND' || code === 'FC_GROUP_MEMBER_NOT_FOUND'
    await changeMembership(this.session, (api) => api.removeGroupMember(ref.id, this.username), (error) => gone(error.code))
    return ref
  }

  /**
   * The presence of `usernames` (default: my pinned contacts, by name), as
   * the server lets me see it (docs/api.md "Presence"): one entry each, in
   * order, asked PRESENCE_QUERY_MAX_USERS at a time.
   */
  async presence(usernames?: string[]): Promise<PresenceEntry[]> {
    const names = usernames ?? Object.keys(await this.session.store.contacts()).sort()
    for (const name of names) checkUsername(name)
    const entries: PresenceEntry[] = []
    for (let i = 0; i < names.length; i += PRESENCE_QUERY_MAX_USERS) {
      const chunk = names.slice(i, i + PRESENCE_QUERY_MAX_USERS)
      entries.push(...(await this.session.withFailover((api) => api.presence(chunk))).users)
    }
    return entries
  }

  /** My presence setting, and what the people I talk with see of it. */
  async myPresence(): Promise<MyPresence> {
    return this.session.withFailover((api) => api.myPresence())
  }

  /** Shows (true) or hides (false) my presence to everyone. */
  async setPresence(visible: boolean): Promise<MyPresence> {
    return this.session.withFailover((api) => api.setPresence(visible))
  }

  /** My own key's fingerprint (lowercase hex), from the key in the store. */
  async fingerprint(): Promise<string> {
    return (await readPublicKey((await requireKeys(this.session.store)).publicKey)).fingerprint
  }

  /** The keys pinned for my contacts, by lowercase username. */
  pins(): Promise<Contacts> {
    return this.session.store.contacts()
  }

  /**
   * Pins the server's key for `username` if, and only if, its fingerprint is
   * `fingerprint` (compared out of band): FC_KEY_MISMATCH otherwise, and
   * nothing changes. Replaces an earlier pin (a key change the user settled).
   */
  async trust(username: string, fingerprint: string): Promise<{username: string; previous: string | null; pinned: string}> {
    const {keys} = this.directory
    const current = await keys.requireCurrent(username)
    if (normalizeFingerprint(fingerprint) !== current.fingerprint) {
      throw new FastChatError('FC_KEY_MISMATCH', `The server's key for ${current.username} is ${formatFingerprint(current.fingerprint)}, not the one you gave; nothing was pinned.`, {
        username: current.username,
        given: fingerprint,
        current: current.fingerprint,
      })
    }
    const previous = (await keys.pinned(current.username))?.fingerprint ?? null
    await keys.replacePin(current, false)
    return {username: current.username, previous, pinned: current.fingerprint}
  }

  private keyed(keyed: KeyedGroup): KeyedGroup {
    for (const key of keyed.pinned) this.report({type: 'key.pinned', username: key.username, fingerprint: key.fingerprint})
    return keyed
  }

  /** My devices (my live sessions), oldest first; `current` is this one. */
  async devices(): Promise<Device[]> {
    return (await this.session.withFailover((api) => api.devices())).devices
  }

  /**
   * Ends one of my devices' sessions, on every server, by its exact name (or
   * id). This device's own is a logout: the token is forgotten here too.
   */
  async revokeDevice(nameOrId: string): Promise<Device> {
    const device = findDevice(await this.devices(), nameOrId)
    await this.session.withFailover((api) => api.revokeDevice(device.id))
    if (device.current) await this.forgetToken()
    return device
  }

  /** Approves a new device's code (`fastchat device link` printed it): it gets my key, still passphrase-protected, and my pins. */
  approveDevice(code: string): Promise<{name: string}> {
    return approveLink(this.session, code)
  }

  /** A new device's link request (the profile must be empty): print its `code`, then waitForApproval(). */
  static startLink(options: {store: Store; superserver?: string; name: string; passphrase: PassphraseProvider}): Promise<PendingLink> {
    return PendingLink.start(options)
  }

  private async forgetToken(): Promise<void> {
    const profile = (await this.session.store.profile()) ?? this.session.profile
    const {token: _token, expiresAt: _expires, ...rest} = profile
    await this.session.store.saveProfile(rest)
  }

  /** Ends this session on the server and forgets the token in the store. */
  async logout(): Promise<void> {
    await this.session.api.logout()
    const profile = (await this.session.store.profile()) ?? this.session.profile
    const {token: _token, expiresAt: _expires, ...rest} = profile
    await this.session.store.saveProfile(rest)
  }

  /**
   * While no server answers: `to` as a pinned contact with a usable peer
   * offer, and the pinned key (the one a send encrypts to anyway; whether the
   * server's key changed is checked again at the next send that reaches it).
   */
  private async offlineRecipient(to: string): Promise<KeyForSending | undefined> {
    const name = to.replace(/^@/, '')
    const pinned = await this.directory.keys.pinned(name)
    if (!pinned || pinned.changedTo !== undefined || !(await this.peers.usable(name))) return undefined
    return {username: name, publicKey: pinned.publicKey, fingerprint: pinned.fingerprint, firstUse: false}
  }

  private async recipient(username: string): Promise<KeyForSending> {
    const key = await this.directory.keys.forSending(username)
    if (key.firstUse) this.report({type: 'key.pinned', username: key.username, fingerprint: key.fingerprint})
    return key
  }

  private async toGroup(ref: GroupRef, content: Parameters<typeof sendToGroup>[4]): Promise<Sent & {blob?: string}> {
    const {keys, groupKeys} = this.directory
    const sent = await sendToGroup(this.session, keys, groupKeys, ref.id, content)
    for (const key of sent.pinned) this.report({type: 'key.pinned', username: key.username, fingerprint: key.fingerprint})
    const group = {id: sent.group.id, name: sent.group.name, epoch: sent.epoch}
    await this.receipts.recordSent(sent.id, `group:${group.id}`)
    return {id: sent.id, sentAt: sent.sentAt, to: `group:${group.id}`, group, members: sent.group.members.length, ...(sent.blob ? {blob: sent.blob} : {})}
  }
}

/** The server's largest history page. */
const HISTORY_PAGE_MAX = 200

export type {Report}

/** A key pair from `keys generate` already in the store is used as is (after checking its passphrase); otherwise a new one. */
async function keyPair(options: RegisterOptions): Promise<{publicKey: string; privateKey: string; fingerprint: string}> {
  const [privateKey, publicKey] = await Promise.all([options.store.privateKey(), options.store.publicKey()])
  if (privateKey && publicKey) {
    const unlocked = await unlockPrivateKey(privateKey, await options.passphrase())
    return {privateKey, publicKey: unlocked.publicKey, fingerprint: unlocked.fingerprint}
  }
  return generateKeyPair({username: options.username, passphrase: await options.newPassphrase()})
}

/** Logs in (failing over) and saves the session in the profile. */
async function loginTo(
  store: Store,
  at: {superserver: string; client: ApiClient; remember: (url: string) => void},
  username: string,
  password: string,
  fingerprint: string,
  device?: string,
): Promise<Profile & {token: string}> {
  let server = at.client.baseUrl
  const session = await withFailover(
    {superserver: at.superserver, client: at.client},
    (api) => {
      server = api.baseUrl
      return api.login({username, password, ...(device === undefined ? {} : {device})})
    },
    at.remember,
  )
  const profile = {username: session.username, superserver: at.superserver, server, token: session.token, expiresAt: session.expiresAt, fingerprint}
  await store.saveProfile(profile)
  return profile
}

/** Whether `username` logs in with `password` and publishes the key with `fingerprint`. */
async function holdsKey(client: ApiClient, username: string, password: string, fingerprint: string): Promise<boolean> {
  try {
    const session = await client.login({username, password})
    const published = await new ApiClient(client.baseUrl, session.token).user(username)
    return (await readPublicKey(published.publicKey)).fingerprint === fingerprint
  } catch {
    return false
  }
}

/** Messages that came by the peer endpoint, waiting to be handed out by messages(). */
class DirectInbox {
  private items: OpenedMessage[] = []
  /** One promise for every wait until the next arrival (a listen that runs for days makes no chain of them). */
  private waiting: {promise: Promise<'direct'>; resolve: () => void} | undefined

  push(item: OpenedMessage): void {
    this.items.push(item)
    const waiting = this.waiting
    this.waiting = undefined
    waiting?.resolve()
  }

  /** Resolves with 'direct' once something is waiting. */
  arrival(): Promise<'direct'> {
    if (this.items.length > 0) return Promise.resolve('direct')
    if (!this.waiting) {
      let resolve!: () => void
      const promise = new Promise<'direct'>((done) => (resolve = () => done('direct')))
      this.waiting = {promise, resolve}
    }
    return this.waiting.promise
  }

  take(): OpenedMessage[] {
    return this.items.splice(0)
  }

}

/** Where the peer endpoint's messages go (FastChatClient.openPeerEndpoint): claimed by signed id, then shown. */
export interface DirectSink {
  /** True when the message is new and to be shown; then its server copy is to be dropped. */
  claim(signedId: string, copy?: {ciphertext: string; message: OpenedMessage}): Promise<boolean>
  /** Hands it on; the endpoint answers the sender once this has settled. */
  show(message: OpenedMessage): Promise<void> | void
}

/** The largest file the peer endpoint takes: what is downloaded unasked (--max-download), any with --download, none without files. */
export function maxDirectFileBytes(files: ReceiveFilesOptions | undefined): number {
  return !files ? 0 : files.automatic ? files.automatic.maxBytes : MAX_BLOB_BYTES
}
