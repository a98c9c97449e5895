import {randomBytes, scryptSync} from 'node:crypto'

import {expect} from 'chai'
import type {DataSource} from 'typeorm'

import type {RunningChatServer} from '../../server/main.js'
import {REVOCATION_BOUND_MS} from '../../server/services/session-cache.js'
import {createDataSource} from '../../storage/data-source.js'
import {fixturePublicKey, login, PASSWORD, registerAndLogin, uniqueName} from '../helpers/api.js'
import {startTestServer} from '../helpers/cluster.js'
import {eventually} from '../helpers/processes.js'
import {http} from '../helpers/http.js'

const count = async (db: DataSource, table: string): Promise<number> => (await db.query(`SELECT count(*)::int AS n FROM ${table}`))[0].n

describe('accounts and sessions', () => {
  let a: RunningChatServer
  let b: RunningChatServer
  let db: DataSource

  before(async () => {
    db = await createDataSource({url: process.env.DATABASE_URL!}).initialize()
    // At the production cost of password hashes (the other suites lower it to save time).
    const production = {FASTCHAT_SCRYPT_LOG2_N: '17'}
    ;[a, b] = await Promise.all([startTestServer(undefined, production), startTestServer(undefined, production)])
  })
  after(async () => {
    await Promise.all([a.close(), b.close()])
    await db.destroy()
  })

  it('registers a user with their public key and answers its fingerprint', async () => {
    const username = uniqueName('Reg')
    const publicKey = await fixturePublicKey('alice')
    const answer = await http('POST', `${a.url}/v1/users`, {json: {username, password: PASSWORD, publicKey}})
    expect(answer.status).to.equal(201)
    expect(answer.body.username).to.equal(username)
    expect(answer.body.fingerprint).to.match(/^[0-9a-f]{40,64}$/)

    const me = await login(b.url, username.toLowerCase())
    const found = await http('GET', `${b.url}/v1/users/${username.toUpperCase()}`, {headers: me.auth})
    expect(found.status).to.equal(200)
    expect(found.body).to.deep.include({username, fingerprint: answer.body.fingerprint})
    expect(found.body.publicKey).to.include('BEGIN PGP PUBLIC KEY BLOCK')
    const [row] = await db.query('SELECT password_hash FROM users WHERE username = $1', [username])
    expect(row.password_hash).to.match(/^scrypt\$/).and.not.include(PASSWORD)
  })

  it('keeps usernames unique whatever their case', async () => {
    const username = uniqueName('case')
    await registerAndLogin(a.url, username)
    const answer = await http('POST', `${b.url}/v1/users`, {json: {username: username.toUpperCase(), password: PASSWORD, publicKey: await fixturePublicKey('bob')}})
    expect(answer.status).to.equal(409)
    expect(answer.body.code).to.equal('FC_USERNAME_TAKEN')
  })

  it('rejects bad usernames, passwords and keys with 400 and stores nothing', async () => {
    const publicKey = await fixturePublicKey('alice')
    const before = await count(db, 'users')
    const bad = [
      {username: 'ab', password: PASSWORD, publicKey},
      {username: 'x'.repeat(33), password: PASSWORD, publicKey},
      {username: 'ünïcode', password: PASSWORD, publicKey},
      {username: 'new\nline', password: PASSWORD, publicKey},
      {username: '-dash', password: PASSWORD, publicKey},
      {username: uniqueName('pw'), password: 'short', publicKey},
      {username: uniqueName('key'), password: PASSWORD, publicKey: 'not a key'},
      {username: uniqueName('key'), password: PASSWORD, publicKey: '-----BEGIN PGP PUBLIC KEY BLOCK-----\n\ngarbage\n-----END PGP PUBLIC KEY BLOCK-----'},
      {username: uniqueName('extra'), password: PASSWORD, publicKey, admin: true},
      {username: uniqueName('missing')},
    ]
    for (const json of bad) {
      const answer = await http('POST', `${a.url}/v1/users`, {json})
      expect(answer.status, JSON.stringify(json).slice(0, 80)).to.equal(400)
      expect(answer.headers.get('content-type')).to.match(/problem\+json/)
      expect(answer.body.code).to.equal('FC_VALIDATION')
    }
    expect(await count(db, 'users')).to.equal(before)
  })

  it('answers the same 401 for an unknown user and a wrong password', async () => {
    const user = await registerAndLogin(a.url, uniqueName('login'))
    const wrong = await http('POST', `${a.url}/v1/sessions`, {json: {username: user.username, password: 'wrong password!'}})
    const unknown = await http('POST', `${a.url}/v1/sessions`, {json: {username: uniqueName('ghost'), password: 'wrong password!'}})
    expect(wrong.status).to.equal(401)
    expect(unknown.status).to.equal(401)
    const {instance: _a, ...wrongBody} = wrong.body
    const {instance: _b, ...unknownBody} = unknown.body
    expect(wrongBody).to.deep.equal(unknownBody)
  })

  it('stores only the hash of a token, and a logout revokes it on every server', async () => {
    const user = await registerAndLogin(a.url, uniqueName('logout'))
    const [row] = await db.query(`SELECT count(*)::int AS n FROM sessions WHERE token_hash = sha256(convert_to($1, 'UTF8'))`, [user.token])
    expect(row.n).to.equal(1)
    expect((await db.query(`SELECT count(*)::int AS n FROM sessions WHERE encode(token_hash, 'escape') LIKE '%' || $1 || '%'`, [user.token]))[0].n).to.equal(0)

    expect((await http('GET', `${b.url}/v1/me`, {headers: user.auth})).status).to.equal(200)
    expect((await http('DELETE', `${a.url}/v1/sessions/current`, {headers: user.auth})).status).to.equal(204)
    // At once on the server that logged out; within REVOCATION_BOUND_MS on b, which held it in memory (session-revocation.test.ts times it).
    const onB = () => http('GET', `${b.url}/v1/me`, {headers: user.auth}).then((answer) => answer.status !== 200 && answer)
    for (const answer of [await http('GET', `${a.url}/v1/me`, {headers: user.auth}), await eventually(onB, 'b to refuse the token', REVOCATION_BOUND_MS)]) {
      expect(answer.status).to.equal(401)
      expect(answer.body.code).to.equal('FC_UNAUTHORIZED')
    }
  })

  it('refuses expired, malformed and missing tokens', async () => {
    const user = await registerAndLogin(a.url, uniqueName('expired'))
    await db.query(`UPDATE sessions SET expires_at = now() - interval '1 second' WHERE token_hash = sha256(convert_to($1, 'UTF8'))`, [user.token])
    for (const headers of [user.auth, {}, {authorization: 'Bearer '}, {authorization: `Basic ${user.token}`}, {authorization: `Bearer ${'x'.repeat(5000)}`}]) {
      const answer = await http('GET', `${a.url}/v1/me`, {headers: headers as Record<string, string>})
      expect(answer.status).to.equal(401)
      expect(answer.headers.get('www-authenticate')).to.equal('Bearer')
    }
  })

  const tokenHash = `sha256(convert_to($1, 'UTF8'))`

  it('hole 10: DELETE /v1/sessions ends every session of the caller on every server, and nobody else\'s', async () => {
    const first = await registerAndLogin(a.url, uniqueName('everywhere'))
    const others = [await login(a.url, first.username), await login(b.url, first.username), await login(b.url, first.username)]
    const bystander = await registerAndLogin(b.url, uniqueName('bystander'))
    // Every token works, on both servers, before.
    for (const user of [first, ...others]) expect((await http('GET', `${b.url}/v1/me`, {headers: user.auth})).status).to.equal(200)

    expect((await http('DELETE', `${b.url}/v1/sessions`, {headers: others[0]!.auth})).status).to.equal(204)
    for (const user of [first, ...others]) {
      for (const server of [a.url, b.url]) expect((await http('GET', `${server}/v1/me`, {headers: user.auth})).status).to.equal(401)
    }
    expect((await http('GET', `${a.url}/v1/me`, {headers: bystander.auth})).status).to.equal(200)
    expect((await http('DELETE', `${a.url}/v1/sessions`, {headers: first.auth})).status, 'a revoked token cannot do it again').to.equal(401)
    // Logging in again works as ever.
    expect((await http('GET', `${a.url}/v1/me`, {headers: (await login(a.url, first.username)).auth})).status).to.equal(200)
  })

  it('hole 10: a session unused for the idle period expires; its use is recorded at most once an hour', async () => {
    const idle = await registerAndLogin(a.url, uniqueName('idle'))
    const busy = await login(a.url, idle.username)
    const lastUsed = async (user: {token: string}) =>
      ((await db.query(`SELECT last_used_at FROM sessions WHERE token_hash = ${tokenHash}`, [user.token]))[0].last_used_at as Date).getTime()
    expect(await lastUsed(busy)).to.be.closeTo(Date.now(), 60_000)

    // 15 days unused, with the default idle limit of 14: gone, though its 30 days are not over.
    await db.query(`UPDATE sessions SET last_used_at = now() - interval '15 days' WHERE token_hash = ${tokenHash}`, [idle.token])
    const expired = await http('GET', `${b.url}/v1/me`, {headers: idle.auth})
    expect(expired.status).to.equal(401)

    // Used 30 minutes ago: a request does not write again...
    await db.query(`UPDATE sessions SET last_used_at = now() - interval '30 minutes' WHERE token_hash = ${tokenHash}`, [busy.token])
    const halfHourAgo = await lastUsed(busy)
    expect((await http('GET', `${a.url}/v1/me`, {headers: busy.auth})).status).to.equal(200)
    expect(await lastUsed(busy)).to.equal(halfHourAgo)
    // ...but used 13 days 23 hours ago (more than an hour): the use is recorded, and the session lives on.
    await db.query(`UPDATE sessions SET last_used_at = now() - interval '13 days 23 hours' WHERE token_hash = ${tokenHash}`, [busy.token])
    expect((await http('GET', `${b.url}/v1/me`, {headers: busy.auth})).status).to.equal(200)
    expect(await lastUsed(busy), 'recorded before the answer').to.be.closeTo(Date.now(), 60_000)
    expect((await http('GET', `${a.url}/v1/me`, {headers: busy.auth})).status).to.equal(200)
  })

  it('hole 10: hashes passwords with scrypt N=2^17, and rehashes an older hash at the next login', async () => {
    const user = await registerAndLogin(a.url, uniqueName('rehash'))
    const stored = async () => (await db.query('SELECT password_hash FROM users WHERE username = $1', [user.username]))[0].password_hash as string
    expect(await stored()).to.match(/^scrypt\$131072\$8\$1\$/)

    // The hash the server made before this change: N=2^15.
    const salt = randomBytes(16)
    const old = `scrypt$32768$8$1$${salt.toString('base64')}$${scryptSync(PASSWORD, salt, 32, {N: 2 ** 15, r: 8, p: 1, maxmem: 64 * 1024 * 1024}).toString('base64')}`
    await db.query('UPDATE users SET password_hash = $2 WHERE username = $1', [user.username, old])
    expect((await http('POST', `${b.url}/v1/sessions`, {json: {username: user.username, password: 'not the password'}})).status).to.equal(401)
    expect(await stored(), 'a failed login changes nothing').to.equal(old)

    await login(b.url, user.username)
    const rehashed = await stored()
    expect(rehashed).to.match(/^scrypt\$131072\$8\$1\$/)
    expect(rehashed).not.to.include(salt.toString('base64'))
    await login(a.url, user.username)
    expect(await stored(), 'rehashed once').to.equal(rehashed)
  })

  it('answers 404 for an unknown user', async () => {
    const user = await registerAndLogin(a.url, uniqueName('finder'))
    const answer = await http('GET', `${a.url}/v1/users/${uniqueName('nobody')}`, {headers: user.auth})
    expect(answer.status).to.equal(404)
    expect(answer.body.code).to.equal('FC_USER_NOT_FOUND')
  })
})
