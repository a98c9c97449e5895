import {expect} from 'chai'

import {PerUserSlots} from '../../server/services/per-user-slots.js'

/** Issue 12, holes 4 and 5: the per-user bound on transfers (refused beyond it) and event reads (queued beyond it). */
describe('hole 4/5: per-user slots', () => {
  it('refuses past the cap per user, and frees a slot once, however often it is released', () => {
    const slots = new PerUserSlots(2)
    const a = slots.tryAcquire('alice')
    const b = slots.tryAcquire('alice')
    expect(a).to.be.a('function')
    expect(b).to.be.a('function')
    expect(slots.tryAcquire('alice')).to.equal(undefined)
    expect(slots.tryAcquire('bob')).to.be.a('function')
    a!()
    a!()
    expect(slots.held('alice')).to.equal(1)
    expect(slots.tryAcquire('alice')).to.be.a('function')
    expect(slots.tryAcquire('alice')).to.equal(undefined)
  })

  it('queues past the cap in arrival order, hands a released slot to the next, and drops a waiter that aborts', async () => {
    const slots = new PerUserSlots(1)
    const first = (await slots.acquire('alice'))!
    const order: string[] = []
    const gone = new AbortController()
    const second = slots.acquire('alice').then((release) => (order.push('second'), release))
    const quitter = slots.acquire('alice', gone.signal).then((release) => (order.push(release ? 'quitter' : 'quitter gave up'), release))
    const third = slots.acquire('alice').then((release) => (order.push('third'), release))
    gone.abort()
    await quitter
    expect(slots.held('alice')).to.equal(1)
    first()
    ;(await second)!()
    ;(await third)!()
    expect(order).to.deep.equal(['quitter gave up', 'second', 'third'])
    expect(slots.held('alice')).to.equal(0)
  })
})
