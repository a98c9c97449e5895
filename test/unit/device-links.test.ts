import {expect} from 'chai'

import {generateOneTimeKey, openLinkCheck, sealLinkCheck} from '../../crypto/index.js'
import {findDevice, parseLinkCode} from '../../client/devices.js'

describe('device links', () => {
  it('reads a code as typed: any case, with or without the dash, I and L as 1, O as 0', () => {
    expect(parseLinkCode('K7M2QX-9PXA4H')).to.deep.equal({link: 'K7M2QX', secret: '9PXA4H'})
    expect(parseLinkCode(' k7m2qx 9pxa4h ')).to.deep.equal({link: 'K7M2QX', secret: '9PXA4H'})
    expect(parseLinkCode('KIM2QO-LPXA4H')).to.deep.equal({link: 'K1M2Q0', secret: '1PXA4H'})
    for (const bad of ['', 'K7M2QX', 'K7M2QX-9PXA4', 'K7M2QX-9PXA4HH', 'K7M2QU-9PXA4H', 'K7M2QX-9PXA4!']) {
      expect(() => parseLinkCode(bad), bad).to.throw().with.property('code', 'FC_VALIDATION')
    }
  })

  it('seals a check that only the secret half opens, naming the one-time key', async function () {
    this.timeout(20_000)
    const key = await generateOneTimeKey()
    const check = await sealLinkCheck('9PXA4H', key.fingerprint)
    expect(check).to.match(/^-----BEGIN PGP MESSAGE-----/)
    expect(check).not.to.contain(key.fingerprint)
    expect(await openLinkCheck(check, '9PXA4H')).to.equal(key.fingerprint)
    const wrong = await openLinkCheck(check, '9PXA4J').then(() => undefined, (error: unknown) => error as {code: string})
    expect(wrong).to.include({code: 'FC_DECRYPT_FAILED'})
  })

  it('finds a device by its exact name or id, and says when none or several have it', () => {
    const device = (id: string, name: string) => ({id, name, createdAt: '', lastActiveAt: '', current: false})
    const devices = [device('00000000-0000-4000-8000-000000000001', 'laptop'), device('00000000-0000-4000-8000-000000000002', 'phone'), device('00000000-0000-4000-8000-000000000003', 'phone')]
    expect(findDevice(devices, 'laptop').id).to.equal('00000000-0000-4000-8000-000000000001')
    expect(findDevice(devices, '00000000-0000-4000-8000-000000000003').name).to.equal('phone')
    expect(() => findDevice(devices, 'Laptop')).to.throw().with.property('code', 'FC_DEVICE_NOT_FOUND')
    expect(() => findDevice(devices, 'phone')).to.throw().with.property('code', 'FC_AMBIGUOUS_DEVICE')
  })
})
