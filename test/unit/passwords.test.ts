import {randomBytes, scryptSync} from 'node:crypto'

import {expect} from 'chai'

import {PasswordHasher} from '../../server/services/passwords.js'

const oldHash = (password: string) => {
  const salt = randomBytes(16)
  return `scrypt$32768$8$1$${salt.toString('base64')}$${scryptSync(password, salt, 32, {N: 2 ** 15, r: 8, p: 1, maxmem: 64 * 1024 * 1024}).toString('base64')}`
}

describe('hole 10: password hashing', function () {
  this.timeout(30_000)

  it('hole 10: hashes with scrypt N=2^17, r=8, p=1, and so does the decoy checked for unknown users', async () => {
    const hasher = new PasswordHasher({concurrency: 2, maxWaiting: 50})
    const stored = await hasher.hash('correct horse')
    expect(stored).to.match(/^scrypt\$131072\$8\$1\$[A-Za-z0-9+/=]{24}\$[A-Za-z0-9+/=]{44}$/)
    expect(await hasher.verify('correct horse', stored)).to.deep.equal({ok: true, stale: false})
    expect(await hasher.verify('wrong horse', stored)).to.deep.equal({ok: false, stale: false})
    expect(await hasher.decoy()).to.match(/^scrypt\$131072\$8\$1\$/)
  })

  it('hole 10: says when a right password was checked against an older, cheaper hash', async () => {
    const hasher = new PasswordHasher({concurrency: 2, maxWaiting: 50})
    const stored = oldHash('correct horse')
    expect(await hasher.verify('correct horse', stored)).to.deep.equal({ok: true, stale: true})
    expect((await hasher.verify('wrong horse', stored)).ok).to.equal(false)
    // Parameters no one should make us run: refused without deriving anything.
    expect((await hasher.verify('x', 'scrypt$1073741824$8$1$AAAA$AAAA')).ok).to.equal(false)
    expect((await hasher.verify('x', 'bcrypt$whatever')).ok).to.equal(false)
  })

  it('hole 10: runs at most `concurrency` hashes at once (128 MiB each), queues the rest, and refuses beyond the queue', async () => {
    const hasher = new PasswordHasher({concurrency: 2, maxWaiting: 3})
    let peak = 0
    const sampler = setInterval(() => (peak = Math.max(peak, hasher.stats().running)), 2)
    const results = await Promise.allSettled(Array.from({length: 6}, (_, i) => hasher.hash(`password ${i}`)))
    clearInterval(sampler)
    expect(peak).to.be.within(1, 2)
    expect(results.filter((r) => r.status === 'fulfilled')).to.have.length(5)
    const refused = results.find((r) => r.status === 'rejected') as PromiseRejectedResult
    expect(refused.reason).to.include({code: 'FC_SERVER_BUSY', status: 503})
    expect(hasher.stats()).to.include({running: 0, waiting: 0, hashes: 5})
  })
})
