import {expect} from 'chai'
import {z} from 'zod'

import {loadServerConfig} from '../../server/config.js'
import {ConfigError, resolveSettings} from '../../server/settings.js'
import {loadSuperserverConfig} from '../../superserver/config.js'

describe('settings', () => {
  const settings = {
    port: {env: 'PORT', doc: 'port', schema: z.coerce.number().int().default(4000)},
    secret: {env: 'SECRET', doc: 'secret', schema: z.string().min(16), secret: true},
  }

  it('takes flags over the environment over defaults', () => {
    expect(resolveSettings(settings, {}, {SECRET: 'x'.repeat(16)}).port).to.equal(4000)
    expect(resolveSettings(settings, {}, {PORT: '5000', SECRET: 'x'.repeat(16)}).port).to.equal(5000)
    expect(resolveSettings(settings, {port: 6000}, {PORT: '5000', SECRET: 'x'.repeat(16)}).port).to.equal(6000)
  })

  it('treats an empty variable as unset', () => {
    expect(resolveSettings(settings, {}, {PORT: '', SECRET: 'x'.repeat(16)}).port).to.equal(4000)
  })

  it('names every bad variable and never prints a secret', () => {
    expect(() => resolveSettings(settings, {}, {PORT: 'eleven', SECRET: 'short-secret'}))
      .to.throw(ConfigError)
      .with.property('message')
      .that.matches(/PORT \(got "eleven"\)/)
      .and.matches(/SECRET: /)
      .and.not.include('short-secret')
  })

  it('requires a cluster secret when a chat server joins a superserver', () => {
    expect(() => loadServerConfig({superserverUrl: 'http://127.0.0.1:4000'}, {DATABASE_URL: 'postgres://x'})).to.throw(/FASTCHAT_CLUSTER_SECRET/)
    const config = loadServerConfig({superserverUrl: 'http://127.0.0.1:4000/'}, {DATABASE_URL: 'postgres://x', FASTCHAT_CLUSTER_SECRET: 's'.repeat(16)})
    expect(config.superserverUrl).to.equal('http://127.0.0.1:4000')
    expect(config.port).to.equal(4001)
  })

  it('rejects a superserver URL that is not http(s)', () => {
    expect(() => loadServerConfig({superserverUrl: 'ftp://host'}, {DATABASE_URL: 'postgres://x', FASTCHAT_CLUSTER_SECRET: 's'.repeat(16)})).to.throw(
      /FASTCHAT_SUPERSERVER/,
    )
  })

  it('refuses eviction before unhealthiness', () => {
    const env = {DATABASE_URL: 'postgres://x', FASTCHAT_CLUSTER_SECRET: 's'.repeat(16)}
    expect(loadSuperserverConfig({}, env).heartbeatMs).to.equal(2000)
    expect(() => loadSuperserverConfig({}, {...env, FASTCHAT_UNHEALTHY_AFTER_BEATS: '6', FASTCHAT_EVICT_AFTER_BEATS: '3'})).to.throw(/EVICT/)
  })
})
