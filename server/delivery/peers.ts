import type {Logger} from 'pino'
import {Counter, type Registry} from 'prom-client'
import {Agent, request} from 'undici'

import type {PresenceRepository} from '../../storage/repositories/presence.repository.js'

/**
 * Peer-assisted delivery (docs/architecture.md, "Waking polls on other
 * servers"). Each server records where its pollers listen (PresenceRecorder);
 * after a commit, the accepting server looks the recipients up and wakes the
 * servers holding their polls directly (PeerPush), batching what arrives
 * within a millisecond into one request per peer. Each server's re-check
 * (./recheck.ts) is the fallback: a lost push costs latency, never a message.
 */

/** A user's presence row is rewritten at most this often by one server. */
const PRESENCE_REFRESH_MS = 30_000
/** Wake-ups for the same peer arriving within this window share one request. */
const PUSH_BATCH_MS = 1
/** Most user ids in one wake-up request (~20 bytes each, under the JSON body limit). */
const PUSH_MAX_USERS = 5_000
/** A push that takes longer is abandoned; the re-check covers it. */
const PUSH_TIMEOUT_MS = 1_000
/** How long a presence lookup is reused for the same recipient. */
const PRESENCE_CACHE_MS = 1_000
/** Recipients whose presence is cached; past this the cache starts over. */
const PRESENCE_CACHE_MAX = 100_000
/** A peer that failed is skipped for this long (it is probably dead or draining). */
const PEER_BACKOFF_MS = 5_000

export class PresenceRecorder {
  private readonly recorded = new Map<string, number>()
  private sweptAt = Date.now()
  private pending = new Set<string>()
  private timer: NodeJS.Timeout | undefined

  constructor(
    private readonly presence: PresenceRepository,
    private readonly ownUrl: string,
    private readonly logger: Logger,
  ) {}

  /** Called for every poll; writes (batched) only when this server's record of the user is old. */
  seen(userId: string): void {
    const at = this.recorded.get(userId)
    if (at !== undefined && Date.now() - at < PRESENCE_REFRESH_MS) return
    this.pending.add(userId)
    this.timer ??= setTimeout(() => void this.flush(), 2)
  }

  private async flush(): Promise<void> {
    this.timer = undefined
    const ids = [...this.pending]
    this.pending = new Set()
    if (ids.length === 0) return
    try {
      await this.presence.record(ids, this.ownUrl)
      const now = Date.now()
      for (const id of ids) this.recorded.set(id, now)
      // Stale entries only cost memory: sweep them once per refresh period, not on every write.
      if (now - this.sweptAt >= PRESENCE_REFRESH_MS) {
        this.sweptAt = now
        this.forgetOld(now)
      }
    } catch (error) {
      // The next poll of these users tries again; meanwhile the re-check wakes them.
      this.logger.warn({err: error, users: ids.length}, 'could not record presence')
    }
  }

  private forgetOld(now: number): void {
    for (const [id, at] of this.recorded) if (now - at >= PRESENCE_REFRESH_MS) this.recorded.delete(id)
  }

  /** On drain: this server's polls are gone, so peers should stop pushing here. */
  async stop(): Promise<void> {
    clearTimeout(this.timer)
    await this.presence.forgetServer(this.ownUrl).catch((error: unknown) => this.logger.warn({err: error}, 'could not clear presence'))
  }
}

export class PeerPush {
  private pending = new Set<string>()
  /** Where recipients were polling, as last looked up, and until when that answer is used. */
  private readonly where = new Map<string, {urls: string[]; until: number}>()
  private timer: NodeJS.Timeout | undefined
  private readonly backoff = new Map<string, number>()
  private readonly agent = new Agent({keepAliveTimeout: 30_000, connections: 4, connect: {timeout: PUSH_TIMEOUT_MS}})
  private readonly inFlight = new Set<Promise<void>>()
  private readonly pushes: Counter<'result'>

  constructor(
    private readonly presence: PresenceRepository,
    private readonly ownUrl: string,
    private readonly clusterSecret: string,
    private readonly logger: Logger,
    registry?: Registry,
  ) {
    this.pushes = new Counter({
      name: 'fastchat_server_peer_pushes_total',
      help: 'Wake-up requests sent to peer chat servers, by result (ok, failed, skipped while backing off)',
      labelNames: ['result'] as const,
      registers: registry ? [registry] : [],
    })
  }

  /** Queues a wake-up for these users' polls on other servers. */
  wake(userIds: Iterable<string>): void {
    for (const id of userIds) this.pending.add(id)
    if (this.pending.size > 0) this.timer ??= setTimeout(() => this.track(this.flush()), PUSH_BATCH_MS)
  }

  private track(work: Promise<void>): void {
    this.inFlight.add(work)
    void work.finally(() => this.inFlight.delete(work))
  }

  private async flush(): Promise<void> {
    this.timer = undefined
    const ids = [...this.pending]
    this.pending = new Set()
    const now = Date.now()
    // Where each user polls is looked up at most once a second; a user who just moved
    // to another server meanwhile is woken by that server's re-check instead.
    const unknown = ids.filter((id) => (this.where.get(id)?.until ?? 0) <= now)
    if (unknown.length > 0) {
      let found: Map<string, string[]>
      try {
        found = await this.presence.peersOf(unknown, this.ownUrl)
      } catch (error) {
        this.logger.warn({err: error}, 'could not look up presence; polls elsewhere wait for their re-check')
        return
      }
      const urls = new Map<string, string[]>(unknown.map((id) => [id, []]))
      for (const [url, users] of found) for (const id of users) urls.get(id)?.push(url)
      if (this.where.size > PRESENCE_CACHE_MAX) this.where.clear()
      for (const [id, list] of urls) this.where.set(id, {urls: list, until: now + PRESENCE_CACHE_MS})
    }
    const peers = new Map<string, string[]>()
    for (const id of ids) {
      for (const url of this.where.get(id)?.urls ?? []) {
        let users = peers.get(url)
        if (!users) peers.set(url, (users = []))
        users.push(id)
      }
    }
    await Promise.all([...peers].map(([url, users]) => this.push(url, users)))
  }

  private async push(url: string, users: string[]): Promise<void> {
    if ((this.backoff.get(url) ?? 0) > Date.now()) {
      this.pushes.inc({result: 'skipped'})
      return
    }
    for (let i = 0; i < users.length; i += PUSH_MAX_USERS) {
      try {
        const answer = await request(new URL('/v1/cluster/wake', url), {
          method: 'POST',
          dispatcher: this.agent,
          headers: {authorization: `Bearer ${this.clusterSecret}`, 'content-type': 'application/json'},
          body: JSON.stringify({users: users.slice(i, i + PUSH_MAX_USERS)}),
          headersTimeout: PUSH_TIMEOUT_MS,
          bodyTimeout: PUSH_TIMEOUT_MS,
        })
        await answer.body.dump()
        if (answer.statusCode !== 204) throw new Error(`peer answered ${answer.statusCode}`)
        this.pushes.inc({result: 'ok'})
      } catch (error) {
        this.pushes.inc({result: 'failed'})
        this.backoff.set(url, Date.now() + PEER_BACKOFF_MS)
        this.logger.debug({err: error, peer: url}, 'peer push failed; backing off')
        return
      }
    }
    this.backoff.delete(url)
  }

  async stop(): Promise<void> {
    clearTimeout(this.timer)
    await Promise.allSettled([...this.inFlight])
    await this.agent.close()
  }
}
