import {createHash, randomBytes} from 'node:crypto'

import pg from 'pg'

import {hashPassword} from '../../server/services/passwords.js'
import type {FixtureKey} from '../../test/helpers/keys.js'
import {Http} from './http.js'

/**
 * Benchmark users. Registering through POST /v1/users costs a scrypt hash
 * (N=2^17: ~0.4 s of a core, 128 MiB) each, and logging in another, far too
 * slow for thousands, so with access to the
 * cluster's database users, their inboxes and sessions are inserted with SQL
 * (setup, not measured). Without it they are registered through the API,
 * and scenarios needing more than API_USER_LIMIT users are skipped.
 */
export interface SeededUser {
  id: string
  username: string
  token: string
}

export interface UserSource {
  /** Most users one call may ask for. */
  readonly limit: number
  readonly how: string
  seed(label: string, count: number): Promise<SeededUser[]>
  close(): Promise<void>
}

/** The password of every benchmark user (all share one real scrypt hash). */
export const BENCH_PASSWORD = 'bench password, not secret'
const SQL_CHUNK = 2_000
const API_USER_LIMIT = 300
const API_CONCURRENCY = 4

/** A short random tag, so names never collide with an earlier run on the same database. */
export const runTag = randomBytes(3).toString('hex')
const username = (label: string, i: number) => `b${runTag}_${label}_${i}`

export class SqlUsers implements UserSource {
  readonly limit = Number.POSITIVE_INFINITY
  readonly how = 'inserted with SQL'
  private passwordHash: Promise<string> | undefined

  private constructor(
    private readonly client: pg.Client,
    private readonly key: FixtureKey,
  ) {}

  static async connect(databaseUrl: string, key: FixtureKey): Promise<SqlUsers> {
    const client = new pg.Client({connectionString: databaseUrl, application_name: 'fastchat-bench'})
    await client.connect()
    return new SqlUsers(client, key)
  }

  async seed(label: string, count: number): Promise<SeededUser[]> {
    this.passwordHash ??= hashPassword(BENCH_PASSWORD)
    const hash = await this.passwordHash
    const out: SeededUser[] = []
    for (let from = 0; from < count; from += SQL_CHUNK) {
      const names = Array.from({length: Math.min(SQL_CHUNK, count - from)}, (_, i) => username(label, from + i))
      const tokens = names.map(() => randomBytes(32).toString('base64url'))
      const hashes = tokens.map((token) => createHash('sha256').update(token).digest('hex'))
      const {rows} = await this.client.query<{id: string; username: string; token: string}>(
        `WITH given AS (
           SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS g(username, token, token_hash, n)
         ), created AS (
           INSERT INTO users (username, username_key, password_hash, public_key, fingerprint)
           SELECT username, lower(username), $4, $5, $6 FROM given ORDER BY n
           RETURNING id, username
         ), boxes AS (
           INSERT INTO inboxes (user_id) SELECT id FROM created
         ), sessions AS (
           INSERT INTO sessions (token_hash, user_id, expires_at, id)
           SELECT decode(g.token_hash, 'hex'), c.id, now() + interval '1 day', gen_random_uuid() FROM created c JOIN given g USING (username)
         )
         SELECT c.id::text AS id, c.username, g.token FROM created c JOIN given g USING (username) ORDER BY g.n`,
        [names, tokens, hashes, hash, this.key.publicKey, this.key.fingerprint],
      )
      out.push(...rows)
    }
    return out
  }

  async close(): Promise<void> {
    await this.client.end()
  }
}

export class ApiUsers implements UserSource {
  readonly limit = API_USER_LIMIT
  readonly how = 'registered through the API (no database access)'
  private readonly http = new Http(API_CONCURRENCY * 2)

  constructor(
    private readonly servers: string[],
    private readonly key: FixtureKey,
  ) {}

  async seed(label: string, count: number): Promise<SeededUser[]> {
    const out: SeededUser[] = new Array(count)
    let next = 0
    await Promise.all(
      Array.from({length: API_CONCURRENCY}, async () => {
        for (let i = next++; i < count; i = next++) {
          const server = this.servers[i % this.servers.length]!
          const name = username(label, i)
          const created = await this.http.call('POST', `${server}/v1/users`, {body: JSON.stringify({username: name, password: BENCH_PASSWORD, publicKey: this.key.publicKey})})
          if (created.status !== 201) throw new Error(`registering ${name}: HTTP ${created.status}`)
          const session = await this.http.call<{token: string}>('POST', `${server}/v1/sessions`, {body: JSON.stringify({username: name, password: BENCH_PASSWORD})})
          if (session.status !== 201) throw new Error(`logging in ${name}: HTTP ${session.status}`)
          const me = await this.http.call<{username: string}>('GET', `${server}/v1/me`, {token: session.body.token})
          // The id is only used as a label by the benchmark; the API does not expose it.
          out[i] = {id: me.body.username, username: name, token: session.body.token}
        }
      }),
    )
    return out
  }

  async close(): Promise<void> {
    await this.http.close()
  }
}
