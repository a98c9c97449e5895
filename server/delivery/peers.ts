import type {Logger} from 'pino'
import {Counter, type Registry} from 'prom-client'
import {Agent, request} from 'undici'

import type {PresenceRepository} from '../../storage/repositories/presence.repository.js'
import type {WireEvent} from './listener.js'
import type {CommittedMessage} from './views.js'

/**
 * Peer-assisted delivery (docs/architecture.md, "Waking polls on other
 * servers"). Each server records where its pollers listen (PresenceRecorder);
 * after a commit, the accepting server looks the recipients up and wakes the
 * servers holding their polls and streams directly (PeerPush), with the
 * committed messages themselves (so the peer answers without reading them
 * back) or, for other events and past a byte budget, a wake-up; what arrives
 * within a millisecond goes in one request per peer. Each server's re-check
 * (./recheck.ts) is the fallback: a lost push costs latency, never a message.
 */

/** A user's presence row is rewritten at most this often by one server. */
const PRESENCE_REFRESH_MS = 30_000
/** Wake-ups for the same peer arriving within this window share one request. */
const PUSH_BATCH_MS = 1
/** Most user ids in one wake-up request (~20 bytes each, under the JSON body limit). */
const PUSH_MAX_USERS = 5_000
/** A push that takes longer (connect, then answer) is abandoned; the re-check covers it. The default of FASTCHAT_PEER_TIMEOUT_MS. */
const PUSH_TIMEOUT_MS = 1_000
/**
 * A peer that fails is named in a warning at most this often: a wrong --url or
 * a cut between servers costs every message the re-check's latency, which an
 * operator must hear of, but not once per message.
 */
const PEER_WARN_EVERY_MS = 30_000
/** Bytes of messages and lazy events in one push request (under the peers' JSON body limit); past it they go in the next. */
const PUSH_MAX_BYTES = 192 * 1024
/**
 * Connections per peer for appends: one is held per flush of receipts sent
 * there until the peer's window for them ends (at most about one a
 * FASTCHAT_RECEIPT_FLUSH_MS / READ_RECEIPT_TICK_MS, plus the delivered
 * receipts' flush); past this they queue, which only makes them later.
 */
const APPEND_CONNECTIONS = 32
/** Messages (or lazy events) in one push request. */
const PUSH_MAX_MESSAGES = 500
/**
 * Push requests carrying events to one peer per flush; past them the rest of
 * the recipients are only woken (they read). A burst of committed events (a
 * batch of sends with the read receipts riding along easily passes one
 * request's bytes) then costs a few requests rather than a read per recipient.
 */
const PUSH_MAX_BODIES = 8
/** A message's view besides its ciphertext (ids, names, time), counted against PUSH_MAX_BYTES. */
const PUSH_MESSAGE_ENVELOPE_BYTES = 256
/** How long a presence lookup is reused for the same recipient. */
const PRESENCE_CACHE_MS = 1_000
/**
 * How long "listens on no other server" is reused: briefly, because that is
 * what a user who is about to start listening looks like. Reused for the full
 * second, it made the first messages to someone who had just opened `listen`
 * wait for the re-check (up to FASTCHAT_RECHECK_MS, 500 ms) instead of being
 * pushed (docs/benchmarks.md, "The direct path").
 */
const ABSENT_CACHE_MS = 50
/** Recipients whose presence is cached; past this the cache starts over. */
const PRESENCE_CACHE_MAX = 100_000
/** A peer that failed is skipped for this long (it is probably dead or draining). */
const PEER_BACKOFF_MS = 5_000

export interface PresenceRecorderOptions {
  /**
   * How often one user's row is rewritten at most: PRESENCE_REFRESH_MS, or
   * less for a short offline delay (a third of FASTCHAT_PRESENCE_OFFLINE_MS),
   * so that a user who keeps polling is never swept offline.
   */
  refreshMs?: number
  /** Told the users a write found coming online (server/services/presence.ts announces it). */
  onOnline?: (userIds: string[]) => void
}

export class PresenceRecorder {
  private readonly recorded = new Map<string, number>()
  private sweptAt = Date.now()
  private pending = new Set<string>()
  private timer: NodeJS.Timeout | undefined
  private readonly refreshMs: number

  constructor(
    private readonly presence: PresenceRepository,
    private readonly ownUrl: string,
    private readonly logger: Logger,
    private readonly options: PresenceRecorderOptions = {},
  ) {
    this.refreshMs = Math.min(PRESENCE_REFRESH_MS, options.refreshMs ?? PRESENCE_REFRESH_MS)
  }

  /** Called for every poll; writes (batched) only when this server's record of the user is old. */
  seen(userId: string): void {
    const at = this.recorded.get(userId)
    if (at !== undefined && Date.now() - at < this.refreshMs) return
    this.pending.add(userId)
    this.timer ??= setTimeout(() => void this.flush(), 2)
  }

  private async flush(): Promise<void> {
    this.timer = undefined
    const ids = [...this.pending]
    this.pending = new Set()
    if (ids.length === 0) return
    try {
      const online = await this.presence.record(ids, this.ownUrl)
      const now = Date.now()
      for (const id of ids) this.recorded.set(id, now)
      if (online.length > 0) this.options.onOnline?.(online)
      // Stale entries only cost memory: sweep them once per refresh period, not on every write.
      if (now - this.sweptAt >= this.refreshMs) {
        this.sweptAt = now
        this.forgetOld(now)
      }
    } catch (error) {
      // The next poll of these users tries again; meanwhile the re-check wakes them.
      this.logger.warn({err: error, users: ids.length}, 'could not record presence')
    }
  }

  private forgetOld(now: number): void {
    for (const [id, at] of this.recorded) if (now - at >= this.refreshMs) this.recorded.delete(id)
  }

  /** Whether the user polled or streamed here lately (their presence here is fresh). */
  isHere(userId: string): boolean {
    const at = this.recorded.get(userId)
    return this.pending.has(userId) || (at !== undefined && Date.now() - at < 2 * this.refreshMs)
  }

  /** On drain: this server's polls are gone, so peers should stop pushing here. */
  async stop(): Promise<void> {
    clearTimeout(this.timer)
    await this.presence.forgetServer(this.ownUrl).catch((error: unknown) => this.logger.warn({err: error}, 'could not clear presence'))
  }
}

/** Where a recipient polls, as looked up, and until when that answer is used. */
interface Where {
  urls: string[]
  until: number
}

/** What one push request carries of events: the messages (with seqs) and lazy events of users there. */
interface PeerLoad {
  messages: {view: CommittedMessage['view']; to: [string, string][]}[]
  lazy: LazyWire[]
  bytes: number
}

/** One peer's share of a flush: the users to wake there, and its events, in requests of at most PUSH_MAX_BYTES. */
interface PeerShare {
  wake: string[]
  loads: PeerLoad[]
}

/** The request of `peer` that has room for `size` more bytes: the last one, or a new one (undefined past PUSH_MAX_BODIES). */
function roomFor(peer: PeerShare, size: number): PeerLoad | undefined {
  const last = peer.loads[peer.loads.length - 1]
  if (last && (last.bytes === 0 || last.bytes + size <= PUSH_MAX_BYTES) && last.messages.length + last.lazy.length < PUSH_MAX_MESSAGES) return last
  if (peer.loads.length >= PUSH_MAX_BODIES) return undefined
  const load: PeerLoad = {messages: [], lazy: [], bytes: 0}
  peer.loads.push(load)
  return load
}

/** A lazy event (a receipt, presence) as it goes to a peer: recipient, seq, type, and its wire JSON. */
export type LazyWire = [string, string, string, string]

/** The wake-up body a peer accepts (server/routes/cluster.ts validates it). */
export interface PushBody {
  users: string[]
  messages?: {view: CommittedMessage['view']; to: [string, string][]}[]
  /** Lazy events, handed over as they are (the peer's polls hold them: Listener.hold). */
  lazy?: LazyWire[]
}

export class PeerPush {
  private pendingWake = new Set<string>()
  private pendingMessages: CommittedMessage[] = []
  private pendingLazy: {recipientId: string; event: WireEvent}[] = []
  private readonly where = new Map<string, Where>()
  private timer: NodeJS.Timeout | undefined
  private readonly backoff = new Map<string, number>()
  /** Per peer, until when appends are not tried after one failed (pushes keep their own back-off). */
  private readonly appendBackoff = new Map<string, number>()
  private readonly agent: Agent
  /** Appends (POST /v1/cluster/events) on connections of their own: each waits for its recipients' window there, and must not hold up pushes. */
  private readonly appendAgent: Agent
  /** How long an append may wait beyond the push timeout: the peer answers once its receipts' window is over and committed. */
  private readonly appendWaitMs: number
  private readonly clusterSecret: string
  private readonly timeoutMs: number
  private readonly inFlight = new Set<Promise<void>>()
  private readonly pushes: Counter<'result'>
  private readonly failures: Counter<'peer'>
  /** Per failing peer: when it was last named in a warning, and the pushes lost since. */
  private readonly warned = new Map<string, {at: number; lost: number}>()

  constructor(
    private readonly presence: PresenceRepository,
    private readonly ownUrl: string,
    peers: {secret: string; timeoutMs?: number; appendWaitMs?: number},
    private readonly logger: Logger,
    registry?: Registry,
  ) {
    this.clusterSecret = peers.secret
    this.timeoutMs = peers.timeoutMs ?? PUSH_TIMEOUT_MS
    this.appendWaitMs = peers.appendWaitMs ?? 0
    this.agent = new Agent({keepAliveTimeout: 30_000, connections: 4, connect: {timeout: this.timeoutMs}})
    this.appendAgent = new Agent({keepAliveTimeout: 30_000, connections: APPEND_CONNECTIONS, connect: {timeout: this.timeoutMs}})
    this.pushes = new Counter({
      name: 'fastchat_server_peer_pushes_total',
      help: 'Pushes (committed events and wake-ups) sent to peer chat servers, by result (ok, failed, skipped while backing off)',
      labelNames: ['result'] as const,
      registers: registry ? [registry] : [],
    })
    this.failures = new Counter({
      name: 'fastchat_server_peer_push_failures_total',
      help: 'Pushes lost (failed, or skipped while the peer backs off), by peer URL: their recipients wait for the re-check',
      labelNames: ['peer'] as const,
      registers: registry ? [registry] : [],
    })
  }

  /**
   * Queues, for the servers where these users listen, wake-ups (`wake`: they
   * read their streams) and committed messages (handed over as they are).
   */
  push(wake: string[], messages: CommittedMessage[], lazy: {recipientId: string; event: WireEvent}[] = []): void {
    for (const id of wake) this.pendingWake.add(id)
    for (const message of messages) this.pendingMessages.push(message)
    for (const event of lazy) this.pendingLazy.push(event)
    if (this.pendingWake.size > 0 || this.pendingMessages.length > 0 || this.pendingLazy.length > 0) {
      this.timer ??= setTimeout(() => this.track(this.flush()), PUSH_BATCH_MS)
    }
  }

  private track(work: Promise<void>): void {
    this.inFlight.add(work)
    void work.finally(() => this.inFlight.delete(work))
  }

  private async flush(): Promise<void> {
    this.timer = undefined
    const wake = [...this.pendingWake]
    const messages = this.pendingMessages
    const lazy = this.pendingLazy
    this.pendingWake = new Set()
    this.pendingMessages = []
    this.pendingLazy = []
    const ids = new Set(wake)
    for (const message of messages) for (const {recipientId} of message.to) ids.add(recipientId)
    for (const {recipientId} of lazy) ids.add(recipientId)
    try {
      await this.lookUp(ids)
    } catch (error) {
      this.logger.warn({err: error}, 'could not look up presence; listeners elsewhere wait for their re-check')
      return
    }
    const shares = new Map<string, PeerShare>()
    const share = (url: string) => {
      let found = shares.get(url)
      if (!found) shares.set(url, (found = {wake: [], loads: []}))
      return found
    }
    for (const id of wake) for (const url of this.where.get(id)?.urls ?? []) share(url).wake.push(id)
    for (const message of messages) {
      const byPeer = new Map<string, [string, string][]>()
      for (const {recipientId, seq} of message.to) {
        for (const url of this.where.get(recipientId)?.urls ?? []) {
          let list = byPeer.get(url)
          if (!list) byPeer.set(url, (list = []))
          list.push([recipientId, seq.toString()])
        }
      }
      const size = PUSH_MESSAGE_ENVELOPE_BYTES + message.view.ciphertext.length
      for (const [url, to] of byPeer) {
        const peer = share(url)
        const load = roomFor(peer, size + to.length * 32)
        // Past the last request's budget the recipients are only woken: they read the message back.
        if (!load) {
          for (const [id] of to) peer.wake.push(id)
          continue
        }
        load.bytes += size + to.length * 32
        load.messages.push({view: message.view, to})
      }
    }
    for (const {recipientId, event} of lazy) {
      for (const url of this.where.get(recipientId)?.urls ?? []) {
        const peer = share(url)
        const load = roomFor(peer, event.bytes + 32)
        if (!load) {
          peer.wake.push(recipientId)
          continue
        }
        load.bytes += event.bytes + 32
        load.lazy.push([recipientId, event.seq.toString(), event.type, event.json])
      }
    }
    await Promise.all([...shares].map(([url, peer]) => this.send(url, peer)))
  }

  /**
   * Where each user listens on other servers: looked up at most once a
   * second (once every ABSENT_CACHE_MS while nowhere else); a user who just
   * moved to another server meanwhile is woken by that server's re-check
   * instead. Throws when PostgreSQL does not answer.
   */
  private async lookUp(ids: Iterable<string>): Promise<void> {
    const now = Date.now()
    const unknown = [...ids].filter((id) => (this.where.get(id)?.until ?? 0) <= now)
    if (unknown.length === 0) return
    const found = await this.presence.peersOf(unknown, this.ownUrl)
    const urls = new Map<string, string[]>(unknown.map((id) => [id, []]))
    for (const [url, users] of found) for (const id of users) urls.get(id)?.push(url)
    if (this.where.size > PRESENCE_CACHE_MAX) this.where.clear()
    for (const [id, list] of urls) this.where.set(id, {urls: list, until: now + (list.length > 0 ? PRESENCE_CACHE_MS : ABSENT_CACHE_MS)})
  }

  /** The other servers each of these users listens on (the pushes' lookup and cache); throws when PostgreSQL does not answer. */
  async locate(ids: string[]): Promise<Map<string, string[]>> {
    await this.lookUp(ids)
    return new Map(ids.map((id) => [id, this.where.get(id)?.urls ?? []]))
  }

  /**
   * Hands events to the peer at `url` to append to its users' streams
   * (POST /v1/cluster/events, in requests of at most PUSH_MAX_BYTES, sent
   * together); resolves once the peer committed them all (after its
   * receipts' window: ReceiptGatherer), throws otherwise (then some may have
   * been appended there: the caller's fallback may repeat them).
   */
  async append(url: string, events: {recipientId: string; type: string; payload: Record<string, unknown>}[]): Promise<void> {
    // A peer that fails pushes takes no appends either; one that fails an append (say, slow to commit) still gets pushes.
    const now = Date.now()
    if ((this.backoff.get(url) ?? 0) > now || (this.appendBackoff.get(url) ?? 0) > now) throw new Error('peer backing off after a failure')
    const bodies: string[][] = []
    let part: string[] = []
    let bytes = 0
    for (const event of events) {
      const json = JSON.stringify(event)
      if (part.length > 0 && (bytes + json.length > PUSH_MAX_BYTES || part.length >= PUSH_MAX_MESSAGES)) {
        bodies.push(part)
        part = []
        bytes = 0
      }
      part.push(json)
      bytes += json.length + 1
    }
    if (part.length > 0) bodies.push(part)
    try {
      await Promise.all(
        bodies.map(async (body) => {
          const answer = await request(new URL('/v1/cluster/events', url), {
            method: 'POST',
            dispatcher: this.appendAgent,
            headers: {authorization: `Bearer ${this.clusterSecret}`, 'content-type': 'application/json'},
            body: `{"events":[${body.join(',')}]}`,
            headersTimeout: this.timeoutMs + this.appendWaitMs,
            bodyTimeout: this.timeoutMs,
          })
          await answer.body.dump()
          if (answer.statusCode !== 204) throw new Error(`peer answered ${answer.statusCode}`)
        }),
      )
    } catch (error) {
      this.appendBackoff.set(url, Date.now() + PEER_BACKOFF_MS)
      this.lost(url, error)
      throw error
    }
  }

  private async send(url: string, peer: PeerShare): Promise<void> {
    if ((this.backoff.get(url) ?? 0) > Date.now()) {
      this.pushes.inc({result: 'skipped'})
      this.lost(url)
      return
    }
    const bodies: PushBody[] = []
    const wake = [...new Set(peer.wake)]
    for (let i = 0; i * PUSH_MAX_USERS < wake.length || i < peer.loads.length; i++) {
      const load = peer.loads[i]
      bodies.push({
        users: wake.slice(i * PUSH_MAX_USERS, (i + 1) * PUSH_MAX_USERS),
        ...(load && load.messages.length > 0 ? {messages: load.messages} : {}),
        ...(load && load.lazy.length > 0 ? {lazy: load.lazy} : {}),
      })
    }
    for (const body of bodies) {
      try {
        const answer = await request(new URL('/v1/cluster/wake', url), {
          method: 'POST',
          dispatcher: this.agent,
          headers: {authorization: `Bearer ${this.clusterSecret}`, 'content-type': 'application/json'},
          body: JSON.stringify(body),
          headersTimeout: this.timeoutMs,
          bodyTimeout: this.timeoutMs,
        })
        await answer.body.dump()
        if (answer.statusCode !== 204) throw new Error(`peer answered ${answer.statusCode}`)
        this.pushes.inc({result: 'ok'})
      } catch (error) {
        this.pushes.inc({result: 'failed'})
        this.backoff.set(url, Date.now() + PEER_BACKOFF_MS)
        this.lost(url, error)
        return
      }
    }
    this.backoff.delete(url)
    if (this.warned.delete(url)) this.logger.info({peer: url}, 'peer push works again')
  }

  /** Counts a lost push and names the peer in a warning, at most once per PEER_WARN_EVERY_MS per peer. */
  private lost(url: string, error?: unknown): void {
    this.failures.inc({peer: url})
    const now = Date.now()
    const last = this.warned.get(url)
    if (last && now - last.at < PEER_WARN_EVERY_MS) {
      last.lost++
      return
    }
    this.warned.set(url, {at: now, lost: 0})
    this.logger.warn(
      {peer: url, reason: error instanceof Error ? error.message : 'backing off after a failure', lostSinceLastWarning: last?.lost ?? 0},
      'peer push failed: recipients on that server wait for its re-check (check its --url and the network between the servers)',
    )
  }

  async stop(): Promise<void> {
    clearTimeout(this.timer)
    await Promise.allSettled([...this.inFlight])
    await Promise.all([this.agent.close(), this.appendAgent.close()])
  }
}
