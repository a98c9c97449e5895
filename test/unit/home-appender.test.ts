import {expect} from 'chai'

import {HomeAppender} from '../../server/delivery/home-appender.js'
import type {AppendedEvent, EventToAppend} from '../../storage/repositories/event-stream.repository.js'

/**
 * HomeAppender on its own: which receipts' events go to the peer their
 * recipient listens on and which are appended here, that what is appended
 * here is appended at once (not when the peers answer), and that a peer's
 * failure costs nothing but the detour. Peers and the local appender (the
 * ReceiptGatherer, which delivers) are recorded here; receipts.test.ts runs
 * it between two real chat servers.
 */
describe("receipts appended by their recipient's server (HomeAppender)", () => {
  const event = (recipientId: string, extra: Partial<EventToAppend> = {}): EventToAppend => ({recipientId, type: 'receipt.read', payload: {receipts: []}, ...extra})
  const setUp = (where: Record<string, string[]>, options: {here?: string[]; failing?: string[]; lookupFails?: boolean; peerAnswers?: Promise<void>} = {}) => {
    const local: string[][] = []
    const sent = new Map<string, string[]>()
    const appender = new HomeAppender(
      {
        appendEvents: async (events) => {
          local.push(events.map((e) => e.recipientId))
          return events.map((e, i): AppendedEvent => ({recipientId: e.recipientId, seq: String(i + 1), type: e.type, payload: e.payload, at: new Date()}))
        },
      },
      {
        locate: async (ids) => {
          if (options.lookupFails) throw new Error('database down')
          return new Map(ids.map((id) => [id, where[id] ?? []]))
        },
        append: async (url, events) => {
          await options.peerAnswers
          if (options.failing?.includes(url)) throw new Error('peer answered 503')
          sent.set(url, [...(sent.get(url) ?? []), ...events.map((e) => e.recipientId)])
        },
      },
      (id) => options.here?.includes(id) ?? false,
    )
    return {appender, local, sent}
  }

  it('hands a peer the events of users who listen there only; the rest (nowhere, here too, on two peers) are appended and delivered here', async () => {
    const {appender, local, sent} = setUp({alice: ['http://b'], bob: ['http://b'], carol: ['http://b', 'http://c'], dave: ['http://c'], erin: ['http://b']}, {here: ['erin']})
    const appended = await appender.publish([event('alice'), event('frank'), event('bob'), event('carol'), event('dave'), event('erin')])
    expect(Object.fromEntries(sent)).to.deep.equal({'http://b': ['alice', 'bob'], 'http://c': ['dave']})
    expect(local).to.deep.equal([['frank', 'carol', 'erin']])
    expect(appended.map((e) => e.recipientId)).to.deep.equal(['frank', 'carol', 'erin'])
  })

  it("appends here at once, without waiting for the peers' answers", async () => {
    let answer!: () => void
    const {appender, local} = setUp({alice: ['http://b']}, {peerAnswers: new Promise<void>((resolve) => (answer = resolve))})
    let done = false
    const publishing = appender.publish([event('alice'), event('frank')]).then(() => (done = true))
    for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve))
    expect(local).to.deep.equal([['frank']])
    expect(done, 'resolves only once the peer committed too').to.equal(false)
    answer()
    await publishing
    expect(done).to.equal(true)
  })

  it('appends here what a failing peer did not take, and everything when the lookup fails', async () => {
    const failing = setUp({alice: ['http://b'], bob: ['http://c']}, {failing: ['http://b']})
    const appended = await failing.appender.publish([event('alice'), event('bob')])
    expect(Object.fromEntries(failing.sent)).to.deep.equal({'http://c': ['bob']})
    expect(failing.local).to.deep.equal([['alice']])
    expect(appended.map((e) => e.recipientId)).to.deep.equal(['alice'])

    const blind = setUp({alice: ['http://b']}, {lookupFails: true})
    await blind.appender.publish([event('alice')])
    expect(blind.local).to.deep.equal([['alice']])
    expect(blind.sent.size).to.equal(0)
  })

  it('keeps here an event with a block check folded into its statement', async () => {
    const {appender, local, sent} = setUp({alice: ['http://b']})
    await appender.publish([event('alice', {type: 'peer.offer', unlessBlockedBy: 'mallory'})])
    expect(local).to.deep.equal([['alice']])
    expect(sent.size).to.equal(0)
  })
})
