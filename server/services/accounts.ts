import {createHash, randomBytes} from 'node:crypto'

import type {Registry} from 'prom-client'

import {isCryptoError} from '../../crypto/errors.js'
import type {NewSession, SessionUser} from '../../storage/repositories/session.repository.js'
import type {UserRecord, UserRepository} from '../../storage/repositories/user.repository.js'
import {AccountError, UnauthorizedError, ValidationError} from './errors.js'
import type {PasswordHasher} from './passwords.js'
import {registerSessionMetrics, SessionCache, type SessionCacheOptions, type SessionCacheStats, type SessionSource} from './session-cache.js'

/** Usernames are compared case-insensitively: stored as given, unique by their lower case. */
export const usernameKey = (username: string) => username.toLowerCase()

const hashToken = (token: string) => createHash('sha256').update(token).digest()

export interface AccountsConfig {
  sessionTtlMs: number
  sessionIdleMs: number
  /** Where the session cache's metrics go (the server's /metrics), if anywhere. */
  registry?: Registry
}

/** What accounts need of session storage (SessionRepository). */
export interface SessionStore extends SessionSource {
  create(tokenHash: Buffer, userId: string, ttlMs: number, device?: string): Promise<NewSession>
  /** Ends the session and appends its revocation to the feed; the revocation's id. */
  delete(tokenHash: Buffer): Promise<bigint>
  /** Ends every session of the user, as one revocation; its id. */
  deleteAllOf(userId: string): Promise<bigint>
  /** Ends the user's session with public id `id`; undefined when the user has none. */
  deleteDevice(userId: string, id: string): Promise<{tokenHash: Buffer; revocation: bigint} | undefined>
}

/** Usernames whose id is kept in memory; the oldest entry goes first. */
const ID_CACHE_SIZE = 100_000

export class AccountService {
  private readonly ids = new Map<string, {id: string; username: string}>()

  constructor(
    private readonly users: UserRepository,
    private readonly sessions: SessionStore,
    private readonly passwords: PasswordHasher,
    private readonly config: AccountsConfig,
    cache: Partial<SessionCacheOptions> = {},
  ) {
    this.cache = new SessionCache(sessions, {idleMs: config.sessionIdleMs, ...cache})
    if (config.registry) registerSessionMetrics(config.registry, () => this.cache.stats())
  }

  private readonly cache: SessionCache

  /** Starts following the revocation feed; until its first read, every token is looked up in the database. */
  start(): void {
    this.cache.start()
  }

  stop(): void {
    this.cache.stop()
  }

  sessionStats(): SessionCacheStats {
    return this.cache.stats()
  }

  async register(input: {username: string; password: string; publicKey: string}): Promise<{username: string; fingerprint: string}> {
    let key
    try {
      // openpgp.js (~16 MiB resident) is loaded on the first registration, not by every idle server.
      const {readPublicKey} = await import('../../crypto/index.js')
      key = await readPublicKey(input.publicKey)
    } catch (error) {
      if (isCryptoError(error)) throw new ValidationError(`publicKey: ${error.message}`, [{path: 'publicKey', message: error.message}])
      throw error
    }
    const id = await this.users.create({
      username: input.username,
      usernameKey: usernameKey(input.username),
      passwordHash: await this.passwords.hash(input.password),
      publicKey: key.armored,
      fingerprint: key.fingerprint,
    })
    if (!id) throw new AccountError('FC_USERNAME_TAKEN', `The username "${input.username}" is taken.`)
    return {username: input.username, fingerprint: key.fingerprint}
  }

  /**
   * Unknown user and wrong password get the same answer, after the same work.
   * A right password checked against an older, cheaper hash is hashed again
   * at today's cost (once: the next login finds the new hash).
   */
  async login(username: string, password: string, device?: string): Promise<{token: string; expiresAt: Date; username: string; device: {id: string; name: string}}> {
    const credentials = await this.users.credentials(usernameKey(username))
    const check = await this.passwords.verify(password, credentials?.passwordHash ?? (await this.passwords.decoy()))
    if (!credentials || !check.ok) throw new UnauthorizedError('Wrong username or password.')
    if (check.stale) await this.users.replacePasswordHash(credentials.id, credentials.passwordHash, await this.passwords.hash(password))
    const token = randomBytes(32).toString('base64url')
    const session = await this.sessions.create(hashToken(token), credentials.id, this.config.sessionTtlMs, device)
    return {token, expiresAt: session.expiresAt, username: credentials.username, device: {id: session.id, name: session.device}}
  }

  /** Ends the session: at once on this server, within REVOCATION_BOUND_MS on the others (they follow the feed). */
  async logout(token: string): Promise<void> {
    const tokenHash = hashToken(token)
    this.cache.revoke({id: await this.sessions.delete(tokenHash), tokenHash})
  }

  /** Ends one of the user's sessions (a device) by its public id, as logout() does; false if the user has none with that id. */
  async endDevice(user: SessionUser, id: string): Promise<boolean> {
    const ended = await this.sessions.deleteDevice(user.userId, id)
    if (ended) this.cache.revoke({id: ended.revocation, tokenHash: ended.tokenHash})
    return ended !== undefined
  }

  /** Ends every session of the user, on every server, as logout() does one. */
  async logoutEverywhere(user: SessionUser): Promise<void> {
    this.cache.revoke({id: await this.sessions.deleteAllOf(user.userId), userId: user.userId})
  }

  /**
   * The user a bearer token belongs to; 401 for no, unknown, expired or revoked tokens. From memory
   * after the first lookup, while the revocation feed is being read; from the database otherwise.
   */
  async authenticate(token: string): Promise<SessionUser> {
    const user = await this.cache.find(hashToken(token))
    if (!user) throw new UnauthorizedError('The token is unknown, expired or revoked; log in again.')
    return user
  }

  /** Every named user, in the order given (duplicates folded); 404 naming the unknown ones. */
  async findMany(usernames: string[]): Promise<UserRecord[]> {
    const keys = [...new Set(usernames.map(usernameKey))]
    const found = new Map((await this.users.findManyByKey(keys)).map((user) => [usernameKey(user.username), user]))
    const unknown = usernames.filter((name) => !found.has(usernameKey(name)))
    if (unknown.length > 0) {
      throw new AccountError('FC_USER_NOT_FOUND', `No user ${unknown.map((name) => `"${name}"`).join(', ')}.`, {extensions: {users: unknown}})
    }
    return keys.map((key) => found.get(key)!)
  }

  /**
   * A user's id and username as registered, from a cache: a username never
   * changes owner (accounts are never renamed or deleted), so a send skips
   * the lookup after the first.
   */
  async resolve(username: string): Promise<{id: string; username: string}> {
    const key = usernameKey(username)
    const cached = this.ids.get(key)
    if (cached !== undefined) return cached
    const user = await this.find(username)
    if (this.ids.size >= ID_CACHE_SIZE) this.ids.delete(this.ids.keys().next().value!)
    const entry = {id: user.id, username: user.username}
    this.ids.set(key, entry)
    return entry
  }

  async idOf(username: string): Promise<string> {
    return (await this.resolve(username)).id
  }

  async find(username: string): Promise<UserRecord> {
    const user = await this.users.findByKey(usernameKey(username))
    if (!user) throw new AccountError('FC_USER_NOT_FOUND', `No user "${username}".`)
    return user
  }
}
