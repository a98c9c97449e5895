import {expect} from 'chai'

import type {RunningChatServer} from '../../server/main.js'
import type {RunningSuperserver} from '../../superserver/main.js'
import {fakeCiphertext, joinGroup, login, registerAndLogin, type TestUser, uniqueName} from '../helpers/api.js'
import {CLUSTER_SECRET, startTestServer, startTestSuperserver} from '../helpers/cluster.js'
import {type Answer, http} from '../helpers/http.js'
import {chatServerRoutes} from '../helpers/routes.js'

/*
 * The authorization walk: every route of a chat server, called without a
 * token, with a revoked token and with the token of a user who has no right
 * to the resource (alice's group, blob, conversation). The route list comes
 * from the app itself, so a new route fails this suite until it is added here.
 */

interface Context {
  alice: TestUser
  bob: TestUser
  group: string
  blob: string
  /** alice's session's public id (GET /v1/devices). */
  device: string
}

interface Probe {
  /** The request, aimed at something of alice's where there is such a thing. */
  request: (ctx: Context) => {path: string; json?: unknown; body?: string; headers?: Record<string, string>}
  /** Open to anyone (accounts, health); not guarded by a token. */
  public?: true
  /** Guarded by the cluster secret instead of a user token. */
  cluster?: true
  /** What an authenticated user with no right to alice's resource gets; 'own' = the route only ever acts on the caller's own data. */
  stranger?: number | 'own'
}

const PROBES: Record<string, Probe> = {
  'GET /healthz': {public: true, request: () => ({path: '/healthz'})},
  'GET /metrics': {cluster: true, request: () => ({path: '/metrics'})},
  'POST /v1/cluster/wake': {cluster: true, request: () => ({path: '/v1/cluster/wake', json: {users: ['1']}})},
  'POST /v1/cluster/events': {cluster: true, request: () => ({path: '/v1/cluster/events', json: {events: [{recipientId: '999999999999', type: 'receipt.read', payload: {receipts: [{from: 'nobody', ciphertext: 'x'}]}}]}})},
  'POST /v1/users': {public: true, request: () => ({path: '/v1/users', json: {}})},
  'POST /v1/sessions': {public: true, request: () => ({path: '/v1/sessions', json: {}})},
  'GET /v1/users/:username': {stranger: 'own', request: (c) => ({path: `/v1/users/${c.alice.username}`})},
  'DELETE /v1/sessions/current': {stranger: 'own', request: () => ({path: '/v1/sessions/current'})},
  'DELETE /v1/sessions': {stranger: 'own', request: () => ({path: '/v1/sessions'})},
  'POST /v1/blocks': {stranger: 'own', request: (c) => ({path: '/v1/blocks', json: {username: c.alice.username}})},
  'GET /v1/blocks': {stranger: 'own', request: () => ({path: '/v1/blocks'})},
  'DELETE /v1/blocks/:username': {stranger: 'own', request: (c) => ({path: `/v1/blocks/${c.alice.username}`})},
  'GET /v1/me': {stranger: 'own', request: () => ({path: '/v1/me'})},
  // A stranger asking about alice is answered "unknown" (presence.test.ts), as for a name nobody has.
  'GET /v1/presence': {stranger: 'own', request: (c) => ({path: `/v1/presence?users=${c.alice.username}`})},
  'GET /v1/me/presence': {stranger: 'own', request: () => ({path: '/v1/me/presence'})},
  'PUT /v1/me/presence': {stranger: 'own', request: () => ({path: '/v1/me/presence', json: {visible: true}})},
  'POST /v1/receipts': {stranger: 'own', request: (c) => ({path: '/v1/receipts', json: {receipts: [{to: c.alice.username, ciphertext: fakeCiphertext('read')}]}})},
  'POST /v1/peer-offers': {stranger: 'own', request: (c) => ({path: '/v1/peer-offers', json: {offers: [{to: c.alice.username, ciphertext: fakeCiphertext('offer')}]}})},
  'GET /v1/me/address': {stranger: 'own', request: () => ({path: '/v1/me/address'})},
  'POST /v1/messages': {
    stranger: 403,
    request: (c) => ({path: '/v1/messages', json: {to: {group: c.group}, epoch: 1, kind: 'text', ciphertext: fakeCiphertext('intruder')}}),
  },
  'GET /v1/events': {stranger: 'own', request: () => ({path: '/v1/events?since=0&timeout=0'})},
  'GET /v1/conversations/:peer': {stranger: 403, request: (c) => ({path: `/v1/conversations/${c.group}`})},
  'POST /v1/groups': {stranger: 'own', request: (c) => ({path: '/v1/groups', json: {name: 'mine', members: [c.bob.username]}})},
  'GET /v1/groups': {stranger: 'own', request: () => ({path: '/v1/groups'})},
  'GET /v1/groups/:id': {stranger: 403, request: (c) => ({path: `/v1/groups/${c.group}`})},
  'GET /v1/groups/invitations': {stranger: 'own', request: () => ({path: '/v1/groups/invitations'})},
  'POST /v1/groups/:id/join': {stranger: 404, request: (c) => ({path: `/v1/groups/${c.group}/join`})},
  'POST /v1/groups/:id/decline': {stranger: 404, request: (c) => ({path: `/v1/groups/${c.group}/decline`})},
  'POST /v1/groups/:id/members': {stranger: 403, request: (c) => ({path: `/v1/groups/${c.group}/members`, json: {username: c.bob.username}})},
  'PATCH /v1/groups/:id/members/:username': {
    stranger: 403,
    request: (c) => ({path: `/v1/groups/${c.group}/members/${c.bob.username}`, json: {role: 'admin'}}),
  },
  'DELETE /v1/groups/:id/members/:username': {stranger: 403, request: (c) => ({path: `/v1/groups/${c.group}/members/${c.bob.username}`})},
  'POST /v1/groups/:id/epochs': {stranger: 403, request: (c) => ({path: `/v1/groups/${c.group}/epochs`})},
  'PUT /v1/groups/:id/keys/:epoch': {
    stranger: 403,
    request: (c) => ({path: `/v1/groups/${c.group}/keys/1`, json: {keys: {[c.alice.username]: fakeCiphertext('k')}}}),
  },
  'GET /v1/groups/:id/keys/:epoch': {stranger: 403, request: (c) => ({path: `/v1/groups/${c.group}/keys/1`})},
  'POST /v1/blobs': {
    stranger: 'own',
    request: () => ({path: '/v1/blobs', body: 'encrypted bytes', headers: {'content-type': 'application/octet-stream'}}),
  },
  'GET /v1/blobs/:blob': {stranger: 404, request: (c) => ({path: `/v1/blobs/${c.blob}`})},
  'GET /v1/devices': {stranger: 'own', request: () => ({path: '/v1/devices'})},
  'DELETE /v1/devices/:id': {stranger: 404, request: (c) => ({path: `/v1/devices/${c.device}`})},
  'POST /v1/devices/links': {public: true, request: () => ({path: '/v1/devices/links', json: {}})},
  // A link belongs to nobody until approved: any session may read a pending one (the code is the secret). An unknown code is 404.
  'GET /v1/devices/links/:link': {stranger: 404, request: () => ({path: '/v1/devices/links/ZZZZZZ'})},
  'POST /v1/devices/links/:link/approve': {stranger: 404, request: () => ({path: '/v1/devices/links/ZZZZZZ/approve', json: {ciphertext: fakeCiphertext('payload')}})},
}

describe('authorization walk over every route', function () {
  this.timeout(60_000)
  let server: RunningChatServer
  let superserver: RunningSuperserver
  let ctx: Context
  let mallory: TestUser
  let revoked: TestUser

  const call = (key: string, headers: Record<string, string>): Promise<Answer> => {
    const [method] = key.split(' ')
    const spec = PROBES[key]!.request(ctx)
    return http(method!, `${server.url}${spec.path}`, {json: spec.json, body: spec.body, headers: {...spec.headers, ...headers}})
  }

  before(async () => {
    superserver = await startTestSuperserver()
    server = await startTestServer(superserver.url)
    const [alice, bob] = await Promise.all([registerAndLogin(server.url, uniqueName('alice'), 'alice'), registerAndLogin(server.url, uniqueName('bob'), 'bob')])
    mallory = await registerAndLogin(server.url, uniqueName('mallory'), 'mallory')
    revoked = await login(server.url, mallory.username)
    expect((await http('DELETE', `${server.url}/v1/sessions/current`, {headers: revoked.auth})).status).to.equal(204)

    const group = (await http('POST', `${server.url}/v1/groups`, {json: {name: 'private', members: [bob.username]}, headers: alice.auth})).body.id
    expect(await joinGroup(group, [bob])).to.equal(2)
    const keys = {[alice.username]: fakeCiphertext('a'), [bob.username]: fakeCiphertext('b')}
    expect((await http('PUT', `${server.url}/v1/groups/${group}/keys/2`, {json: {keys}, headers: alice.auth})).status).to.equal(204)
    const uploaded = await fetch(`${server.url}/v1/blobs`, {
      method: 'POST',
      headers: {...alice.auth, 'content-type': 'application/octet-stream'},
      body: 'secret bytes',
    })
    const blob = ((await uploaded.json()) as {blob: string}).blob
    await http('POST', `${server.url}/v1/messages`, {json: {to: {user: bob.username}, kind: 'image', blob, ciphertext: ''}, headers: alice.auth})
    await http('POST', `${server.url}/v1/messages`, {json: {to: {group}, epoch: 2, kind: 'text', ciphertext: fakeCiphertext('for the group')}, headers: alice.auth})
    const device = ((await http('GET', `${server.url}/v1/devices`, {headers: alice.auth})).body as {devices: {id: string}[]}).devices[0]!.id
    ctx = {alice, bob, group, blob, device}
  })
  after(async () => {
    await server.close()
    await superserver.close()
  })

  it('has a probe for every route the chat server answers, and no probe for a route it does not', () => {
    expect(Object.keys(PROBES).sort()).to.deep.equal(chatServerRoutes().sort())
  })

  it('refuses every guarded route without a token, and with a revoked one', async () => {
    for (const key of Object.keys(PROBES).filter((k) => !PROBES[k]!.public)) {
      for (const headers of [{}, revoked.auth, {authorization: 'Bearer not-a-token'}, {authorization: 'Basic YWxpY2U6cHc='}]) {
        const answer = await call(key, headers)
        expect(answer.status, `${key} with ${JSON.stringify(headers)}`).to.equal(401)
        expect(answer.headers.get('content-type'), key).to.match(/problem\+json/)
      }
    }
  })

  it('refuses cluster routes a user token, however valid', async () => {
    for (const key of Object.keys(PROBES).filter((k) => PROBES[k]!.cluster)) {
      expect((await call(key, mallory.auth)).status, key).to.equal(401)
      expect((await call(key, {authorization: `Bearer ${CLUSTER_SECRET}`})).status, key).to.be.within(200, 299)
    }
  })

  it('gives a user with no right to alice\'s group, blob or conversation a 403 or 404, and nothing of hers', async () => {
    // Logging out ends mallory's session, so the two logouts go last, each with a session of its own.
    const logouts = ['DELETE /v1/sessions/current', 'DELETE /v1/sessions']
    const keys = Object.keys(PROBES).sort((a, b) => logouts.indexOf(a) - logouts.indexOf(b))
    for (const key of keys) {
      const probe = PROBES[key]!
      if (probe.public || probe.cluster) continue
      if (logouts.includes(key)) mallory = await login(server.url, mallory.username)
      const answer = await call(key, mallory.auth)
      if (probe.stranger === 'own') {
        expect(answer.status, `${key}: ${JSON.stringify(answer.body)}`).to.be.within(200, 299)
        expect(JSON.stringify(answer.body ?? ''), key).not.to.include(ctx.group).and.not.to.include(ctx.blob).and.not.to.include('for the group')
      } else {
        expect(answer.status, `${key}: ${JSON.stringify(answer.body)}`).to.equal(probe.stranger)
      }
    }
    // The rejected writes changed nothing: the group is as alice left it.
    const info = await http('GET', `${server.url}/v1/groups/${ctx.group}`, {headers: ctx.alice.auth})
    expect(info.body).to.include({epoch: 2, keyedBy: ctx.alice.username})
    expect(info.body.members.map((m: {username: string; role: string}) => `${m.username}:${m.role}`)).to.deep.equal([
      `${ctx.alice.username}:admin`,
      `${ctx.bob.username}:member`,
    ])
  })

  it('guards the superserver\'s registry routes with the cluster secret', async () => {
    const routes: [string, string, unknown][] = [
      ['GET', '/v1/servers', undefined],
      ['GET', '/metrics', undefined],
      ['POST', '/v1/servers', {url: 'http://127.0.0.1:9'}],
      ['PUT', '/v1/servers/00000000-0000-4000-8000-000000000000/heartbeat', {}],
      ['DELETE', '/v1/servers/00000000-0000-4000-8000-000000000000', undefined],
    ]
    for (const [method, path, json] of routes) {
      for (const headers of [{}, mallory.auth, {authorization: 'Bearer wrong-secret-but-long-enough'}]) {
        expect((await http(method, `${superserver.url}${path}`, {json, headers})).status, `${method} ${path}`).to.equal(401)
      }
    }
  })
})
