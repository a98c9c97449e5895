import {createHash} from 'node:crypto'

import {expect} from 'chai'

import {AccountService, type SessionStore} from '../../server/services/accounts.js'
import {CACHE_TRUST_MS, REVOCATION_POLL_MS, SessionCache} from '../../server/services/session-cache.js'
import {LAST_USE_RESOLUTION_MS, REVOCATION_RETENTION_MS, type FoundSession, type NewSession, type Revocation} from '../../storage/repositories/session.repository.js'

const HOUR_MS = 3_600_000
const hash = (token: string) => createHash('sha256').update(token).digest()

/**
 * Storage as the cache sees it, in memory: sessions by token hash, the revocation feed as an array, a
 * counter of lookups, and switches that make the database fail or hold a lookup until released.
 */
class FakeStore implements SessionStore {
  sessions = new Map<string, FoundSession>()
  feed: Revocation[] = []
  finds = 0
  down = false
  private held: (() => void)[] = []
  /** Lookups wait for release() while set. */
  hold = false
  private heldFeed: (() => void)[] = []
  /** Feed reads wait for releaseFeed() while set. */
  holdFeed = false

  add(token: string, userId: string, times: Partial<FoundSession> = {}): void {
    this.sessions.set(hash(token).toString('hex'), {userId, username: `user${userId}`, expiresInMs: 30 * 24 * HOUR_MS, usedAgoMs: 0, ...times})
  }

  async find(tokenHash: Buffer): Promise<FoundSession | undefined> {
    this.finds++
    if (this.down) throw Object.assign(new Error('connect ECONNREFUSED'), {code: 'ECONNREFUSED'})
    const found = this.sessions.get(tokenHash.toString('hex'))
    if (this.hold) await new Promise<void>((resolve) => this.held.push(resolve))
    return found && {...found}
  }

  release(): void {
    for (const resolve of this.held.splice(0)) resolve()
  }

  async revocationHead(): Promise<bigint> {
    if (this.down) throw new Error('down')
    return this.feed.at(-1)?.id ?? 0n
  }

  async revocationsAfter(id: bigint, limit: number): Promise<Revocation[]> {
    if (this.down) throw new Error('down')
    const rows = this.feed.filter((row) => row.id > id).slice(0, limit)
    if (this.holdFeed) await new Promise<void>((resolve) => this.heldFeed.push(resolve))
    return rows
  }

  releaseFeed(): void {
    for (const resolve of this.heldFeed.splice(0)) resolve()
  }

  /** As SessionRepository.delete does: the session goes, a feed row comes. */
  revokeToken(token: string): bigint {
    this.sessions.delete(hash(token).toString('hex'))
    const id = BigInt(this.feed.length + 1)
    this.feed.push({id, tokenHash: hash(token)})
    return id
  }

  revokeUser(userId: string): bigint {
    for (const [key, session] of this.sessions) if (session.userId === userId) this.sessions.delete(key)
    const id = BigInt(this.feed.length + 1)
    this.feed.push({id, userId})
    return id
  }

  async create(): Promise<NewSession> {
    throw new Error('not used')
  }
  async deleteDevice(): Promise<undefined> {
    throw new Error('not used')
  }
  async delete(tokenHash: Buffer): Promise<bigint> {
    this.sessions.delete(tokenHash.toString('hex'))
    const id = BigInt(this.feed.length + 1)
    this.feed.push({id, tokenHash})
    return id
  }
  async deleteAllOf(userId: string): Promise<bigint> {
    return this.revokeUser(userId)
  }
}

describe('session cache', () => {
  let store: FakeStore
  let now: number
  let cache: SessionCache
  const find = (token: string) => cache.find(hash(token))

  beforeEach(async () => {
    store = new FakeStore()
    now = 1_000_000
    // The feed is read by calling sync(), never by a timer: the clock is ours.
    cache = new SessionCache(store, {idleMs: 14 * 24 * HOUR_MS, now: () => now})
  })

  it('answers a token from the database until the feed has been read once, and from memory after', async () => {
    store.add('t1', '1')
    expect(await find('t1')).to.deep.equal({userId: '1', username: 'user1'})
    expect(await find('t1')).to.deep.equal({userId: '1', username: 'user1'})
    expect(store.finds, 'no feed read yet: nothing is cached').to.equal(2)

    expect(await cache.sync()).to.equal(true)
    await find('t1')
    for (let i = 0; i < 99; i++) expect(await find('t1')).to.deep.equal({userId: '1', username: 'user1'})
    expect(store.finds, '100 requests after the feed is read: one lookup').to.equal(3)
    expect(cache.stats()).to.include({hits: 99, lookups: 3, entries: 1})
  })

  it('trusts memory while the last feed read is fresh, and asks the database once it is stale', async () => {
    store.add('t1', '1')
    await cache.sync()
    await find('t1')
    const lookups = store.finds

    now += CACHE_TRUST_MS - 1
    await find('t1')
    expect(store.finds, 'fresh: memory').to.equal(lookups)
    expect(cache.trusted()).to.equal(true)

    now += 1
    expect(cache.trusted()).to.equal(false)
    await find('t1')
    await find('t1')
    expect(store.finds, 'stale: the database, for every request').to.equal(lookups + 2)

    // A read that fails leaves it stale.
    store.down = true
    expect(await cache.sync()).to.equal(false)
    await find('t1').then(
      () => expect.fail('a stale cache must not answer while the database is down'),
      (error: {code?: string}) => expect(error.code).to.equal('ECONNREFUSED'),
    )
    store.down = false
    expect(await cache.sync()).to.equal(true)
    const before = store.finds
    await find('t1')
    expect(store.finds, 'fresh again: memory').to.equal(before)
  })

  it('counts freshness from when the read was sent, not when it answered', async () => {
    store.add('t1', '1')
    await cache.sync()
    await find('t1')
    store.holdFeed = true
    // A read answered at once after it was sent, then a slow one: sent, and answered CACHE_TRUST_MS later.
    let read = cache.sync()
    now += 100
    store.releaseFeed()
    await read
    expect(cache.trusted(), 'answered 100 ms after it was sent').to.equal(true)
    read = cache.sync()
    now += CACHE_TRUST_MS
    store.releaseFeed()
    await read
    expect(cache.trusted(), `answered ${CACHE_TRUST_MS} ms after it was sent`).to.equal(false)
    const lookups = store.finds
    await find('t1')
    expect(store.finds).to.equal(lookups + 1)
    store.holdFeed = false
  })

  it('evicts a token named by the feed, and every token of a user logged out everywhere', async () => {
    store.add('a', '1')
    store.add('b', '1')
    store.add('c', '2')
    await cache.sync()
    for (const token of ['a', 'b', 'c']) await find(token)
    expect(cache.stats().entries).to.equal(3)

    store.revokeToken('a')
    now += REVOCATION_POLL_MS
    await cache.sync()
    expect(await find('a'), 'revoked: the database says so').to.equal(undefined)
    expect(await find('b')).to.deep.include({userId: '1'})

    store.revokeUser('1')
    now += REVOCATION_POLL_MS
    await cache.sync()
    expect(await find('b')).to.equal(undefined)
    expect(await find('c')).to.deep.include({userId: '2'})
    expect(cache.stats().entries).to.equal(1)
  })

  it('does not keep a lookup that read the session before a revocation the feed delivered meanwhile', async () => {
    store.add('t1', '1')
    await cache.sync()
    store.hold = true
    const racing = find('t1')
    await Promise.resolve()
    // The logout commits while the lookup is on its way back with the row it read before.
    store.revokeToken('t1')
    await cache.sync()
    store.release()
    expect(await racing, 'the request and the logout were concurrent: either answer is right').to.deep.include({userId: '1'})
    store.hold = false
    expect(await find('t1'), 'but it was not cached').to.equal(undefined)
  })

  it('shares a lookup in flight with requests that arrive meanwhile, but not an old one', async () => {
    store.add('t1', '1')
    await cache.sync()
    store.hold = true
    const first = Array.from({length: 100}, () => find('t1'))
    expect(store.finds).to.equal(1)
    now += CACHE_TRUST_MS
    const late = find('t1')
    expect(store.finds, 'a lookup sent too long ago might predate a revocation').to.equal(2)
    store.release()
    await Promise.all([...first, late])
    store.hold = false
  })

  it('ends a session at its expiry, and looks it up again when its use is due to be recorded', async () => {
    store.add('short', '1', {expiresInMs: 5_000})
    store.add('used', '2', {usedAgoMs: LAST_USE_RESOLUTION_MS - 60_000})
    await cache.sync()
    await find('short')
    await find('used')
    const lookups = store.finds
    const step = async (ms: number) => {
      for (let t = 0; t < ms; t += REVOCATION_POLL_MS) {
        now += REVOCATION_POLL_MS
        await cache.sync()
      }
    }
    await step(4_750)
    await find('short')
    expect(store.finds, 'before its expiry: memory').to.equal(lookups)
    await step(250)
    store.sessions.delete(hash('short').toString('hex')) // as the database would no longer find it
    expect(await find('short'), 'expired').to.equal(undefined)

    await step(60_000 - 5_000 - REVOCATION_POLL_MS)
    await find('used')
    expect(store.finds, 'use recorded 59m59s ago: memory').to.equal(lookups + 1)
    await step(REVOCATION_POLL_MS * 2)
    store.add('used', '2', {usedAgoMs: 0})
    await find('used')
    expect(store.finds, 'an hour since its recorded use: the database records it').to.equal(lookups + 2)
    await find('used')
    expect(store.finds).to.equal(lookups + 2)
  })

  it('empties itself after a feed gap long enough that revocations may have been pruned unread', async () => {
    store.add('t1', '1')
    await cache.sync()
    await find('t1')
    now += REVOCATION_RETENTION_MS / 2 + 1
    await cache.sync()
    expect(cache.stats().entries).to.equal(0)
  })

  it('keeps at most its size, the oldest entry going first', async () => {
    cache = new SessionCache(store, {idleMs: 14 * 24 * HOUR_MS, size: 2, now: () => now})
    await cache.sync()
    for (const token of ['x', 'y', 'z']) {
      store.add(token, token)
      await find(token)
    }
    expect(cache.stats().entries).to.equal(2)
    const lookups = store.finds
    await find('z')
    await find('y')
    expect(store.finds).to.equal(lookups)
    await find('x')
    expect(store.finds).to.equal(lookups + 1)
  })

  it('through AccountService: 401 for a revoked token at once on the server that logged it out', async () => {
    const accounts = new AccountService({} as never, store, {} as never, {sessionTtlMs: HOUR_MS, sessionIdleMs: 14 * 24 * HOUR_MS}, {now: () => now})
    const sync = () => (accounts as unknown as {cache: SessionCache}).cache.sync()
    store.add('mine', '7')
    store.add('other', '7')
    await sync()
    expect(await accounts.authenticate('mine')).to.deep.equal({userId: '7', username: 'user7'})
    await accounts.authenticate('other')
    await accounts.logout('mine')
    await accounts.authenticate('mine').then(
      () => expect.fail('revoked'),
      (error: {code?: string}) => expect(error.code).to.equal('FC_UNAUTHORIZED'),
    )
    expect(await accounts.authenticate('other')).to.deep.include({userId: '7'})
    await accounts.logoutEverywhere({userId: '7', username: 'user7'})
    await accounts.authenticate('other').then(
      () => expect.fail('revoked everywhere'),
      (error: {code?: string}) => expect(error.code).to.equal('FC_UNAUTHORIZED'),
    )
  })
})
