import {expect} from 'chai'

import {DirectClaims} from '../../client/event-sync.js'

/**
 * The daemon's record of what came directly (client/event-sync.ts,
 * DirectClaims): a message is shown once, whichever copy comes first. The
 * page that showed a server copy commits, and its seen ids reach the store a
 * moment later; a direct copy arriving in that moment must not be shown.
 */
describe('direct claims (the daemon shows each message once)', () => {
  it('refuses a direct copy of what a page is showing, and of what a committed page showed before the store has it', () => {
    const claims = new DirectClaims()
    claims.mark('signed-1')
    expect(claims.claim('signed-1', []), 'while the page shows it').to.equal(false)
    expect(claims.settle(['signed-1'])).to.deep.equal([])
    // The store's seen ids (the second argument) do not have it yet.
    expect(claims.claim('signed-1', []), 'after the commit, before the store has it').to.equal(false)
  })

  it('claims a direct copy once, and again only after it was released (nobody took it)', () => {
    const claims = new DirectClaims()
    expect(claims.claim('signed-2', [])).to.equal(true)
    expect(claims.claim('signed-2', [])).to.equal(false)
    expect(claims.settle([]), 'saved with the next page').to.deep.equal(['signed-2'])
    claims.release('signed-2')
    expect(claims.claim('signed-2', [])).to.equal(true)
    expect(claims.claim('signed-3', ['signed-3']), 'in the stored seen ids').to.equal(false)
  })
})
