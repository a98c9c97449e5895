import {randomBytes} from 'node:crypto'
import {readFile} from 'node:fs/promises'

import {http, type Answer} from './http.js'

/** Fixture public keys, by name; test-only (fixtures/keys/README.md). */
export async function fixturePublicKey(name: 'alice' | 'bob' | 'carol' | 'mallory'): Promise<string> {
  return readFile(new URL(`../../fixtures/keys/${name}.pub.asc`, import.meta.url), 'utf8')
}

export const PASSWORD = 'a long enough password'

/** A unique, valid username with a readable prefix. */
export const uniqueName = (prefix: string) => `${prefix}${randomBytes(4).toString('hex')}`

export interface TestUser {
  username: string
  token: string
  server: string
  auth: Record<string, string>
}

export async function registerAndLogin(server: string, username: string, key: 'alice' | 'bob' | 'carol' | 'mallory' = 'alice'): Promise<TestUser> {
  const registered = await http('POST', `${server}/v1/users`, {json: {username, password: PASSWORD, publicKey: await fixturePublicKey(key)}})
  if (registered.status !== 201) throw new Error(`register ${username}: ${registered.status} ${JSON.stringify(registered.body)}`)
  return login(server, username)
}

export async function login(server: string, username: string): Promise<TestUser> {
  const session = await http('POST', `${server}/v1/sessions`, {json: {username, password: PASSWORD}})
  if (session.status !== 201) throw new Error(`login ${username}: ${session.status}`)
  return {username, token: session.body.token, server, auth: {authorization: `Bearer ${session.body.token}`}}
}

/** Opaque to the server: it stores ciphertext it cannot read. Real OpenPGP output is used where it matters. */
export const fakeCiphertext = (n: number | string) => `-----BEGIN PGP MESSAGE-----\n\nwcBMA${n}\n-----END PGP MESSAGE-----\n`

export function send(from: TestUser, to: string, ciphertext: string, idempotencyKey?: string, server = from.server): Promise<Answer> {
  return http('POST', `${server}/v1/messages`, {
    json: {to: {user: to}, kind: 'text', ciphertext},
    headers: {...from.auth, ...(idempotencyKey ? {'idempotency-key': idempotencyKey} : {})},
  })
}

export function poll(user: TestUser, since: number, timeoutMs = 0, server = user.server, limit?: number): Promise<Answer> {
  const query = `since=${since}&timeout=${timeoutMs}${limit ? `&limit=${limit}` : ''}`
  return http('GET', `${server}/v1/events?${query}`, {headers: user.auth})
}

/**
 * Has each invitee accept their invitation to `group` (POST /v1/groups/:id/join),
 * one after another: each join starts an epoch. For tests about what members
 * do, once they are members; returns the group's epoch after the last join.
 */
export async function joinGroup(group: string, invitees: TestUser[]): Promise<number> {
  let epoch = 0
  for (const user of invitees) {
    const joined = await http('POST', `${user.server}/v1/groups/${group}/join`, {headers: user.auth})
    if (joined.status !== 200) throw new Error(`${user.username} join ${group}: ${joined.status} ${JSON.stringify(joined.body)}`)
    epoch = joined.body.epoch
  }
  return epoch
}
