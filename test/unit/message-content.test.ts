import {expect} from 'chai'

import {type Arrival, bindingProblem, newBinding, packText, REPLAY_AGE_MS, unpackText} from '../../client/message-content.js'

const GROUP = '6f1c1f1e-8a43-4b43-9d55-0e3a3f6d3a10'
const OTHER_GROUP = '0b7d4c1a-1f4e-4a57-8c1b-5a6f1b2e9c77'

/** How bob receives a message from alice, unless told otherwise. */
const arrival = (overrides: Partial<Arrival> = {}): Arrival => ({
  to: {user: 'bob'},
  sentAt: new Date().toISOString(),
  from: 'alice',
  fromMe: false,
  me: 'bob',
  ...overrides,
})

describe('signed message content (hole 9: conversation binding and replay)', () => {
  it('packs text with a version, a fresh id, its conversation and the time, and reads it back', () => {
    const binding = newBinding({user: 'bob'})
    const packed = packText(binding, 'hello\nbob')
    expect(JSON.parse(packed)).to.include({fastchat: 1, text: 'hello\nbob'})
    expect(unpackText(packed)).to.deep.equal({text: 'hello\nbob', binding})
    expect(newBinding({user: 'bob'}).id).to.not.equal(binding.id)
  })

  it('reads plain text, other JSON and other versions as unbound', () => {
    expect(unpackText('just words')).to.equal(null)
    expect(unpackText('{"text": "no header"}')).to.equal(null)
    expect(unpackText(JSON.stringify({...newBinding({user: 'bob'}), fastchat: 2, text: 'x'}))).to.equal(null)
    expect(bindingProblem(null, arrival())).to.match(/not bound to a conversation/)
  })

  it('accepts a message written to the reader, and the reader\'s own message in their history', () => {
    expect(bindingProblem(newBinding({user: 'bob'}), arrival())).to.equal(null)
    expect(bindingProblem(newBinding({user: 'Bob'}), arrival())).to.equal(null)
    expect(bindingProblem(newBinding({user: 'carol'}), arrival({to: {user: 'carol'}, from: 'bob', fromMe: true}))).to.equal(null)
  })

  it('refuses a message written to someone else and forwarded, whatever conversation the server files it under', () => {
    expect(bindingProblem(newBinding({user: 'bob'}), arrival({to: {user: 'carol'}, me: 'carol'}))).to.match(/written to bob, not to carol/)
    // The server relabels the forwarded message as if it were to bob: still not to carol, who reads it.
    expect(bindingProblem(newBinding({user: 'bob'}), arrival({to: {user: 'bob'}, me: 'carol'}))).to.match(/not to carol/)
    expect(bindingProblem(newBinding({user: 'bob'}), arrival({to: {group: GROUP}, epoch: 1}))).to.match(/group message/)
  })

  it('binds group messages to the group and the key epoch', () => {
    const inGroup = arrival({to: {group: GROUP}, epoch: 3})
    expect(bindingProblem(newBinding({group: GROUP, epoch: 3}), inGroup)).to.equal(null)
    expect(bindingProblem(newBinding({group: OTHER_GROUP, epoch: 3}), inGroup)).to.match(/another group/)
    expect(bindingProblem(newBinding({group: GROUP, epoch: 2}), inGroup)).to.match(/epoch 2/)
    expect(bindingProblem(newBinding({group: GROUP, epoch: 3}), arrival())).to.match(/written to a group/)
  })

  it('refuses a message signed long before the server says it was sent: an old one delivered again', () => {
    const old = {...newBinding({user: 'bob'}), sentAt: new Date(Date.now() - REPLAY_AGE_MS - 60_000).toISOString()}
    expect(bindingProblem(old, arrival())).to.match(/an old message sent again/)
    // In history it keeps the time the server stored when it was sent, so it still verifies there.
    expect(bindingProblem(old, arrival({sentAt: old.sentAt}))).to.equal(null)
  })
})
