import type {DataSource} from 'typeorm'

export interface UserRecord {
  id: string
  username: string
  publicKey: string
  fingerprint: string
}

export interface Credentials {
  id: string
  username: string
  passwordHash: string
}

/** Unique-violation SQLSTATE, raised when a username is taken concurrently. */
export const UNIQUE_VIOLATION = '23505'

export class UserRepository {
  constructor(private readonly db: DataSource) {}

  /** Creates the user and their (empty) event stream; undefined if the name is taken. */
  async create(user: {username: string; usernameKey: string; passwordHash: string; publicKey: string; fingerprint: string}): Promise<string | undefined> {
    try {
      return await this.db.transaction(async (tx) => {
        const [row] = (await tx.query(
          `INSERT INTO users (username, username_key, password_hash, public_key, fingerprint)
           VALUES ($1, $2, $3, $4, $5) RETURNING id`,
          [user.username, user.usernameKey, user.passwordHash, user.publicKey, user.fingerprint],
        )) as {id: string}[]
        await tx.query('INSERT INTO inboxes (user_id) VALUES ($1)', [row!.id])
        return row!.id
      })
    } catch (error) {
      if ((error as {driverError?: {code?: string}}).driverError?.code === UNIQUE_VIOLATION) return undefined
      throw error
    }
  }

  async findByKey(usernameKey: string): Promise<UserRecord | undefined> {
    const [row] = (await this.db.query(
      'SELECT id, username, public_key AS "publicKey", fingerprint FROM users WHERE username_key = $1',
      [usernameKey],
    )) as UserRecord[]
    return row
  }

  /** The users among `usernameKeys` that exist, in no particular order. */
  async findManyByKey(usernameKeys: string[]): Promise<UserRecord[]> {
    return (await this.db.query(
      'SELECT id, username, public_key AS "publicKey", fingerprint FROM users WHERE username_key = ANY($1::text[])',
      [usernameKeys],
    )) as UserRecord[]
  }

  /** Replaces a password hash, unless it changed since `previous` was read (then the newer one stays). */
  async replacePasswordHash(id: string, previous: string, next: string): Promise<void> {
    await this.db.query('UPDATE users SET password_hash = $3 WHERE id = $1 AND password_hash = $2', [id, previous, next])
  }

  async credentials(usernameKey: string): Promise<Credentials | undefined> {
    const [row] = (await this.db.query(
      'SELECT id, username, password_hash AS "passwordHash" FROM users WHERE username_key = $1',
      [usernameKey],
    )) as Credentials[]
    return row
  }
}
