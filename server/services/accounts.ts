import {createHash, randomBytes} from 'node:crypto'

import {CryptoError, readPublicKey} from '../../crypto/index.js'
import type {SessionRepository, SessionUser} from '../../storage/repositories/session.repository.js'
import type {UserRecord, UserRepository} from '../../storage/repositories/user.repository.js'
import {AccountError, UnauthorizedError, ValidationError} from './errors.js'
import type {PasswordHasher} from './passwords.js'

/** Usernames are compared case-insensitively: stored as given, unique by their lower case. */
export const usernameKey = (username: string) => username.toLowerCase()

const hashToken = (token: string) => createHash('sha256').update(token).digest()

export interface AccountsConfig {
  sessionTtlMs: number
}

/** Usernames whose id is kept in memory; the oldest entry goes first. */
const ID_CACHE_SIZE = 100_000

export class AccountService {
  private readonly ids = new Map<string, string>()

  constructor(
    private readonly users: UserRepository,
    private readonly sessions: SessionRepository,
    private readonly passwords: PasswordHasher,
    private readonly config: AccountsConfig,
  ) {}

  async register(input: {username: string; password: string; publicKey: string}): Promise<{username: string; fingerprint: string}> {
    let key
    try {
      key = await readPublicKey(input.publicKey)
    } catch (error) {
      if (error instanceof CryptoError) throw new ValidationError(`publicKey: ${error.message}`, [{path: 'publicKey', message: error.message}])
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
  async login(username: string, password: string): Promise<{token: string; expiresAt: Date; username: string}> {
    const credentials = await this.users.credentials(usernameKey(username))
    const check = await this.passwords.verify(password, credentials?.passwordHash ?? (await this.passwords.decoy()))
    if (!credentials || !check.ok) throw new UnauthorizedError('Wrong username or password.')
    if (check.stale) await this.users.replacePasswordHash(credentials.id, credentials.passwordHash, await this.passwords.hash(password))
    const token = randomBytes(32).toString('base64url')
    const expiresAt = await this.sessions.create(hashToken(token), credentials.id, this.config.sessionTtlMs)
    return {token, expiresAt, username: credentials.username}
  }

  async logout(token: string): Promise<void> {
    await this.sessions.delete(hashToken(token))
  }

  /** Ends every session of the user, on every server (sessions live in Postgres only). */
  async logoutEverywhere(user: SessionUser): Promise<void> {
    await this.sessions.deleteAllOf(user.userId)
  }

  /** The user a bearer token belongs to; 401 for no, unknown, expired or revoked tokens. */
  async authenticate(token: string): Promise<SessionUser> {
    const user = await this.sessions.find(hashToken(token))
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
   * A user's id, from a cache: a username never changes owner (accounts are
   * never renamed or deleted), so a send skips the lookup after the first.
   */
  async idOf(username: string): Promise<string> {
    const key = usernameKey(username)
    const cached = this.ids.get(key)
    if (cached !== undefined) return cached
    const {id} = await this.find(username)
    if (this.ids.size >= ID_CACHE_SIZE) this.ids.delete(this.ids.keys().next().value!)
    this.ids.set(key, id)
    return id
  }

  async find(username: string): Promise<UserRecord> {
    const user = await this.users.findByKey(usernameKey(username))
    if (!user) throw new AccountError('FC_USER_NOT_FOUND', `No user "${username}".`)
    return user
  }
}
