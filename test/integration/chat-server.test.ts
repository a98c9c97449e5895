import {expect} from 'chai'

import type {RunningChatServer} from '../../server/main.js'
import {CLUSTER_AUTH, startTestServer} from '../helpers/cluster.js'
import {http} from '../helpers/http.js'
import {startCli} from '../helpers/processes.js'
import {testEnv} from '../helpers/cluster.js'

describe('chat server skeleton', () => {
  let server: RunningChatServer
  before(async () => {
    server = await startTestServer()
  })
  after(() => server.close())

  it('answers /healthz', async () => {
    const {status, body} = await http('GET', `${server.url}/healthz`)
    expect(status).to.equal(200)
    expect(body).to.deep.equal({status: 'ok'})
  })

  it('exposes Prometheus metrics with per-route counters', async () => {
    await http('GET', `${server.url}/healthz`)
    const {status, headers, body} = await http<string>('GET', `${server.url}/metrics`, {headers: CLUSTER_AUTH})
    expect(status).to.equal(200)
    expect(headers.get('content-type')).to.match(/^text\/plain/)
    expect(body).to.match(/^fastchat_server_http_requests_total\{method="GET",route="\/healthz",status="200"\} \d+$/m)
    expect(body).to.match(/^fastchat_server_process_resident_memory_bytes \d+/m)
  })

  it('hole 10: answers /metrics only to the cluster secret', async () => {
    for (const headers of [{}, {authorization: 'Bearer wrong-secret-but-long-enough'}] as Record<string, string>[]) {
      const answer = await http('GET', `${server.url}/metrics`, {headers})
      expect(answer.status).to.equal(401)
      expect(answer.body.code).to.equal('FC_UNAUTHORIZED')
      expect(JSON.stringify(answer.body)).not.to.include('fastchat_server_')
    }
    expect((await http('GET', `${server.url}/healthz`)).status).to.equal(200)
  })

  it('answers unknown routes with a 404 problem and no stack trace', async () => {
    const {status, headers, body} = await http('GET', `${server.url}/v1/nothing-here`)
    expect(status).to.equal(404)
    expect(headers.get('content-type')).to.match(/^application\/problem\+json/)
    expect(body).to.include({status: 404, code: 'FC_ROUTE_NOT_FOUND', title: 'Not found'})
    expect(headers.get('x-powered-by')).to.equal(null)
    // helmet's hardening headers, on errors as on answers
    expect(headers.get('x-content-type-options')).to.equal('nosniff')
    expect(headers.get('x-frame-options')).to.equal('SAMEORIGIN')
    expect(headers.get('content-security-policy')).to.include("default-src 'self'")
    expect(headers.get('strict-transport-security')).to.match(/max-age=\d+/)
  })

  it('drains on SIGTERM: exits 0 and says nothing alarming', async () => {
    const started = await startCli(['server', '--port', '0'], testEnv({LOG_LEVEL: 'info'}))
    expect((await http('GET', `${started.url}/healthz`)).status).to.equal(200)
    expect(await started.stop('SIGTERM')).to.equal(0)
    expect(started.output()).to.match(/"msg":"draining"/).and.match(/"msg":"chat server stopped"/)
    expect(started.output()).not.to.match(/"level":(50|60)/)
  })

  it('never logs the database URL or the cluster secret', async () => {
    const started = await startCli(['server', '--port', '0', '--superserver', 'http://127.0.0.1:9'], testEnv({LOG_LEVEL: 'trace'}))
    await http('GET', `${started.url}/healthz`, {headers: {authorization: 'Bearer some-user-token-123'}})
    await started.stop('SIGTERM')
    const output = started.output()
    expect(output).to.include('superserver unreachable') // it did log, at length
    expect(output).not.to.include(process.env.DATABASE_URL!)
    expect(output).not.to.include(testEnv().FASTCHAT_CLUSTER_SECRET!)
    expect(output).not.to.include('some-user-token-123')
  })

  it('refuses to start on bad configuration with exit code 1 and the variable named', async () => {
    const error = await startCli(['server', '--port', '0'], testEnv({FASTCHAT_DB_POOL_SIZE: 'many'})).catch((e: Error) => e)
    expect(error).to.be.instanceOf(Error)
    expect((error as Error).message).to.match(/FASTCHAT_DB_POOL_SIZE/)
  })
})
