import {expect} from 'chai'
import fc from 'fast-check'
import type {DataSource} from 'typeorm'
import {Agent, request} from 'undici'

import type {RunningChatServer} from '../../server/main.js'
import {createDataSource} from '../../storage/data-source.js'
import {fakeCiphertext, fixturePublicKey, joinGroup, login, registerAndLogin, type TestUser, uniqueName} from '../helpers/api.js'
import {CLUSTER_SECRET, startTestServer} from '../helpers/cluster.js'
import {chatServerRoutes} from '../helpers/routes.js'

/*
 * Random and malformed requests at every route of a chat server: bodies,
 * headers, query strings, path parameters (unicode, control characters, very
 * long), ciphertexts. Whatever comes in, the answer is a 2xx or a documented
 * 4xx problem, the process stays up, and a rejected request writes nothing.
 */

// Each run draws a new seed (printed on failure): coverage adds up across runs; FASTCHAT_FUZZ_CASES=20000 for a long one.
const CASES = Number(process.env.FASTCHAT_FUZZ_CASES ?? 1_500)
const DOCUMENTED = new Set([200, 201, 204, 400, 401, 403, 404, 409, 410, 413, 415, 429, 431])
const TABLES = ['users', 'inboxes', 'sessions', 'messages', 'events', 'blobs', 'blob_chunks', 'groups', 'group_members', 'group_epochs', 'group_keys', 'group_invitations', 'blocks']

/** Strings that have broken parsers before: unicode, controls, bidi, huge, path tricks, numbers at the edges. */
const nasty = fc.oneof(
  fc.string({unit: 'grapheme', maxLength: 40}),
  fc.string({unit: 'binary', maxLength: 40}),
  fc.string({maxLength: 40}),
  fc.uuid().map(String),
  fc.integer().map(String),
  fc.constantFrom(
    '',
    ' ',
    '\u0000',
    '\u202eevil',
    'a'.repeat(300),
    'é'.repeat(5_000),
    '../../etc/passwd',
    '%00',
    '-1',
    '0',
    '1e309',
    '9999999999999999999999',
    'null',
    '{}',
    '[]',
    '00000000-0000-4000-8000-000000000000',
    '-----BEGIN PGP MESSAGE-----\n\nnot really\n-----END PGP MESSAGE-----',
    '-----BEGIN PGP PUBLIC KEY BLOCK-----\n\ngarbage\n-----END PGP PUBLIC KEY BLOCK-----',
    'alice\u200bbob',
    'ADMIN',
  ),
)

/** Header values must be visible ASCII (the HTTP client refuses anything else before it is sent). */
const headerValue = fc.oneof(
  fc.string({unit: fc.integer({min: 0x20, max: 0x7e}).map((c) => String.fromCharCode(c)), maxLength: 80}),
  fc.constantFrom('application/json', 'application/json; charset=latin1', 'text/plain', 'application/octet-stream', 'multipart/form-data; boundary=x', 'application/problem+json'),
)

/** Bodies: JSON of any shape, the right keys with wrong values, broken JSON, big ones. */
function bodies(ctx: {names: string[]; group: string; blob: string}) {
  const value = fc.oneof(nasty, fc.jsonValue({maxDepth: 3}), fc.constantFrom(...ctx.names, ctx.group, ctx.blob, 1, -1, 2 ** 31, true, null))
  const shaped = fc.dictionary(
    fc.constantFrom('to', 'kind', 'ciphertext', 'blob', 'epoch', 'username', 'password', 'publicKey', 'name', 'members', 'role', 'keys', 'users', 'url'),
    fc.oneof(value, fc.record({user: value}), fc.record({group: value}), fc.array(value, {maxLength: 5}), fc.dictionary(fc.constantFrom(...ctx.names, 'x'), value)),
    {maxKeys: 5},
  )
  return fc.oneof(
    shaped.map((object) => JSON.stringify(object)),
    fc.jsonValue({maxDepth: 4}).map((json) => JSON.stringify(json)),
    fc.string({unit: 'binary', maxLength: 200}),
    fc.constantFrom('', '{', '{"to":', 'null', '"just a string"', '[1,2,3]', '{"__proto__":{"admin":true}}', '{"constructor":{"prototype":{}}}', '['.repeat(5_000)),
    fc.constantFrom(300 * 1024, 5 * 1024 * 1024).map((size) => JSON.stringify({ciphertext: 'x'.repeat(size)})),
  )
}

describe('fuzzing every route', function () {
  this.timeout(10 * 60_000)
  let server: RunningChatServer
  let db: DataSource
  let alice: TestUser
  let bob: TestUser
  let group: string
  let blob: string
  const agent = new Agent({connections: 4})

  const rowCounts = async (): Promise<string> =>
    JSON.stringify((await db.query(`SELECT ${TABLES.map((t) => `(SELECT count(*) FROM ${t}) AS ${t}`).join(', ')}`))[0])

  before(async () => {
    db = await createDataSource({url: process.env.DATABASE_URL!}).initialize()
    server = await startTestServer()
    ;[alice, bob] = await Promise.all([registerAndLogin(server.url, uniqueName('alice'), 'alice'), registerAndLogin(server.url, uniqueName('bob'), 'bob')])
    const auth = {...alice.auth, 'content-type': 'application/json'}
    group = ((await (await fetch(`${server.url}/v1/groups`, {method: 'POST', headers: auth, body: JSON.stringify({name: 'g', members: [bob.username]})})).json()) as {id: string}).id
    await joinGroup(group, [bob])
    await fetch(`${server.url}/v1/groups/${group}/keys/2`, {
      method: 'PUT',
      headers: auth,
      body: JSON.stringify({keys: {[alice.username]: fakeCiphertext(1), [bob.username]: fakeCiphertext(2)}}),
    })
    const uploaded = await fetch(`${server.url}/v1/blobs`, {method: 'POST', headers: {...alice.auth, 'content-type': 'application/octet-stream'}, body: 'bytes'})
    blob = ((await uploaded.json()) as {blob: string}).blob
  })
  after(async () => {
    await agent.close()
    await server.close()
    await db.destroy()
  })

  it(`answers ${CASES} random requests with a 2xx or a documented 4xx, stays up, and writes nothing when it refuses`, async () => {
    const routes = chatServerRoutes()
    const ctx = {names: [alice.username, bob.username], group, blob}
    const tally = new Map<string, number>()
    let cases = 0
    const anyCase = fc.record({
      route: fc.constantFrom(...routes),
      params: fc.array(fc.oneof(nasty, fc.constantFrom(group, blob, alice.username, bob.username, '1')), {minLength: 3, maxLength: 3}),
      query: fc.dictionary(fc.constantFrom('since', 'timeout', 'limit', 'before', 'x', 'since[]'), nasty, {maxKeys: 3}),
      // Mostly past authentication and content negotiation, so that most cases reach the schemas.
      auth: fc.oneof({arbitrary: fc.constant('alice'), weight: 8}, fc.constantFrom('none', 'garbage', 'cluster')),
      contentType: fc.oneof(
        {arbitrary: fc.constant('application/json'), weight: 6},
        {arbitrary: fc.constant('application/octet-stream'), weight: 1},
        fc.option(headerValue, {nil: undefined}),
      ),
      idempotencyKey: fc.option(headerValue, {nil: undefined}),
      body: fc.option(bodies(ctx), {nil: undefined}),
    })

    await fc.assert(
      fc.asyncProperty(anyCase, async (c) => {
        cases++
        const [method, template] = c.route.split(' ') as [string, string]
        let i = 0
        const path = template.replace(/:[a-z]+/g, () => encodeURIComponent(c.params[i++]!))
        const query = new URLSearchParams(c.query).toString()
        const headers: Record<string, string> = {}
        if (c.auth === 'alice') headers.authorization = `Bearer ${alice.token}`
        if (c.auth === 'garbage') headers.authorization = 'Bearer AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'
        if (c.auth === 'cluster') headers.authorization = `Bearer ${CLUSTER_SECRET}`
        if (c.contentType !== undefined) headers['content-type'] = c.contentType
        if (c.idempotencyKey !== undefined) headers['idempotency-key'] = c.idempotencyKey
        // Long-polls must not wait: the fuzzer would spend its time idle.
        const url = `${server.url}${path}?${query}${template === '/v1/events' ? '&timeout=0' : ''}`

        const before = await rowCounts()
        const answer = await request(url, {
          method: method as 'GET',
          headers,
          body: method === 'GET' ? undefined : c.body,
          dispatcher: agent,
          headersTimeout: 20_000,
        })
        const text = await answer.body.text()
        const status = answer.statusCode
        tally.set(String(status), (tally.get(String(status)) ?? 0) + 1)
        const shown = `${method} ${url.length > 200 ? `${url.slice(0, 200)}…` : url}`
        expect(DOCUMENTED.has(status), `${shown} → ${status} ${text.slice(0, 300)}`).to.equal(true)
        if (status >= 400) {
          expect(String(answer.headers['content-type']), shown).to.match(/^application\/problem\+json/)
          const problem = JSON.parse(text) as {status: number; code: string; stack?: unknown}
          expect(problem.status).to.equal(status)
          expect(problem.code).to.match(/^FC_[A-Z_]+$/)
          expect(text).not.to.match(/\n\s+at /) // no stack trace
          expect(await rowCounts(), `${shown} was refused (${status}) but wrote rows`).to.equal(before)
        }
        // A logout in the mix ends alice's session; log in again so the rest still reach past auth.
        const logout = c.route === 'DELETE /v1/sessions/current' || c.route === 'DELETE /v1/sessions'
        if (logout && c.auth === 'alice' && status === 204) alice = await login(server.url, alice.username)
      }),
      {numRuns: CASES, seed: Number(process.env.FASTCHAT_FUZZ_SEED ?? Date.now() % 2 ** 31), endOnFailure: true},
    )
    const health = await fetch(`${server.url}/healthz`)
    expect(health.status, 'the server is still up').to.equal(200)
    console.log(`      fuzz: ${cases} requests over ${routes.length} routes; statuses ${[...tally].sort().map(([s, n]) => `${s}×${n}`).join(' ')}`)
    expect(cases).to.be.at.least(CASES)
  })

  it('refuses usernames with control, bidi or non-ASCII characters, or too long, and writes nothing for them', async () => {
    const key = await fixturePublicKey('carol')
    const before = (await db.query('SELECT count(*)::int AS n FROM users'))[0].n
    for (const username of ['a\u0000b', 'ä'.repeat(10), 'x'.repeat(33), ' padded', 'emoji😀', '\u202ertl', 'ok.name-1_']) {
      const answer = await fetch(`${server.url}/v1/users`, {
        method: 'POST',
        headers: {'content-type': 'application/json'},
        body: JSON.stringify({username, password: 'long enough password', publicKey: key}),
      })
      expect(answer.status, username).to.equal(username === 'ok.name-1_' ? 201 : 400)
    }
    expect((await db.query('SELECT count(*)::int AS n FROM users'))[0].n).to.equal(before + 1)
  })
})
