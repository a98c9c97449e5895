import {expect} from 'chai'

import {advertisedUrl, isLoopbackHost} from '../../server/advertised-url.js'

/** What a chat server registers with the superserver, which hands it to clients and peers on other machines. */
describe('advertised URL', () => {
  it('is --url when given, else the listen address', async () => {
    expect(await advertisedUrl({port: 4001, host: '0.0.0.0', publicUrl: 'https://chat1.example.org'})).to.equal('https://chat1.example.org')
    expect(await advertisedUrl({port: 4001, host: '10.1.2.3'})).to.equal('http://10.1.2.3:4001')
    expect(await advertisedUrl({port: 4001, host: 'fd00::5'})).to.equal('http://[fd00::5]:4001')
  })

  it('is, for a wildcard address, the address this machine reaches the superserver from (never the wildcard)', async () => {
    // The superserver on this machine: the route to it leaves from loopback. Across hosts: multi-host.test.ts.
    expect(await advertisedUrl({port: 4001, host: '0.0.0.0', superserverUrl: 'http://127.0.0.1:4000'})).to.equal('http://127.0.0.1:4001')
    expect(await advertisedUrl({port: 4001, host: '::', superserverUrl: 'http://[::1]:4000'})).to.equal('http://[::1]:4001')
  })

  it('tells loopback hosts from others', () => {
    for (const host of ['127.0.0.1', '127.8.9.10', 'localhost', 'LOCALHOST', 'x.localhost', '::1', '[::1]', '::ffff:127.0.0.1']) expect(isLoopbackHost(host), host).to.equal(true)
    for (const host of ['10.0.0.1', '128.0.0.1', 'example.org', 'localhost.example.org', '::ffff:10.0.0.1', 'fd00::1']) expect(isLoopbackHost(host), host).to.equal(false)
  })
})
