import {randomBytes} from 'node:crypto'

import {expect} from 'chai'

import {
  CryptoError,
  decryptGroupBytes,
  decryptGroupText,
  encryptGroupBytes,
  encryptGroupText,
  encryptText,
  generateGroupKey,
  unwrapGroupKey,
  wrapGroupKey,
  type GroupKey,
} from '../../crypto/index.js'
import {armor, dearmor, expectCryptoError, flipMiddleByte} from '../helpers/armor.js'
import {loadFixtureKey, type FixtureKey} from '../helpers/keys.js'

/** The tags of a message's top-level packets (RFC 9580 section 4.2): 1 = PKESK, 3 = SKESK, 18 = SEIPD. */
function packetTags(bytes: Uint8Array): number[] {
  const tags: number[] = []
  let pos = 0
  while (pos < bytes.length) {
    const ctb = bytes[pos++]!
    if (!(ctb & 0x80)) throw new Error(`not a packet header at ${pos - 1}`)
    if (ctb & 0x40) {
      tags.push(ctb & 0x3f)
      for (;;) {
        const first = bytes[pos++]!
        if (first < 192) {
          pos += first
        } else if (first < 224) {
          pos += ((first - 192) << 8) + bytes[pos]! + 192 + 1
        } else if (first === 255) {
          pos += Buffer.from(bytes.subarray(pos, pos + 4)).readUInt32BE() + 4
        } else {
          pos += 1 << (first & 0x1f) // partial body length: more length headers follow
          continue
        }
        break
      }
    } else {
      tags.push((ctb >> 2) & 0x0f)
      const lengthBytes = [1, 2, 4][ctb & 0x03]
      if (lengthBytes === undefined) break // indeterminate: the rest of the input
      pos += Buffer.from(bytes.subarray(pos, pos + lengthBytes)).readUIntBE(0, lengthBytes) + lengthBytes
    }
  }
  if (pos !== bytes.length) throw new Error('packet lengths do not add up')
  return tags
}

describe('crypto: group keys and group messages', () => {
  let alice: FixtureKey
  let bob: FixtureKey
  let carol: FixtureKey
  let mallory: FixtureKey

  before(async () => {
    ;[alice, bob, carol, mallory] = await Promise.all((['alice', 'bob', 'carol', 'mallory'] as const).map((name) => loadFixtureKey(name)))
  })

  describe('group keys', () => {
    it('makes opaque keys: group, epoch and a short id, never the key bytes', () => {
      const key = generateGroupKey('group-a', 1)
      expect(Object.keys(key).sort()).to.deep.equal(['epoch', 'group', 'id'])
      expect(key.group).to.equal('group-a')
      expect(key.epoch).to.equal(1)
      expect(key.id).to.match(/^[0-9a-f]{4}( [0-9a-f]{4}){3}$/)
      expect(JSON.parse(JSON.stringify(key))).to.deep.equal({group: 'group-a', epoch: 1, id: key.id})
      expect(Object.isFrozen(key)).to.equal(true)
      expect(generateGroupKey('group-a', 1).id, 'every key is fresh').to.not.equal(key.id)
    })

    it('refuses look-alike key handles and nonsense groups or epochs', async () => {
      const key = generateGroupKey('group-a', 1)
      const lookAlike: GroupKey = {group: key.group, epoch: key.epoch, id: key.id}
      await expectCryptoError(encryptGroupText({text: 'hi', key: lookAlike, signer: alice.unlocked}), 'FC_BAD_GROUP_KEY')
      await expectCryptoError(wrapGroupKey({key: lookAlike, members: {bob: bob.publicKey}, signer: alice.unlocked}), 'FC_BAD_GROUP_KEY')
      expect(() => generateGroupKey('', 1)).to.throw(CryptoError)
      expect(() => generateGroupKey('group-a', -1)).to.throw(CryptoError)
      expect(() => generateGroupKey('group-a', 1.5)).to.throw(CryptoError)
    })

    it('wraps one key for alice, bob and carol, and each unwraps that same key', async () => {
      const key = generateGroupKey('group-a', 2)
      const members = {carol: carol.publicKey, alice: alice.publicKey, bob: bob.publicKey}
      const wrapped = await wrapGroupKey({key, members, signer: alice.unlocked})
      expect(Object.keys(wrapped)).to.deep.equal(['carol', 'alice', 'bob'])
      for (const armored of Object.values(wrapped)) expect(armored).to.match(/^-----BEGIN PGP MESSAGE-----/)
      // One encryption per member: no copy carries another member's key packet.
      expect(new Set(Object.values(wrapped)).size).to.equal(3)
      for (const armored of Object.values(wrapped)) expect(packetTags(dearmor(armored))).to.deep.equal([1, 18])

      const message = await encryptGroupText({text: 'hello, group', key, signer: alice.unlocked})
      for (const member of [alice, bob, carol]) {
        const name = Object.keys(members).find((username) => members[username as keyof typeof members] === member.publicKey)!
        const unwrapped = await unwrapGroupKey({armored: wrapped[name]!, key: member.unlocked, signerPublicKey: alice.publicKey, group: 'group-a', epoch: 2})
        expect(unwrapped).to.deep.equal({group: 'group-a', epoch: 2, id: key.id})
        // Not just the same id: the same key.
        expect((await decryptGroupText({armored: message, key: unwrapped, senderPublicKey: alice.publicKey})).text).to.equal('hello, group')
      }
    })

    it('lets no one but the addressee unwrap a copy', async () => {
      const key = generateGroupKey('group-a', 2)
      const wrapped = await wrapGroupKey({key, members: {alice: alice.publicKey, bob: bob.publicKey}, signer: alice.unlocked})
      const opts = {signerPublicKey: alice.publicKey, group: 'group-a', epoch: 2}
      await expectCryptoError(unwrapGroupKey({...opts, armored: wrapped.bob!, key: mallory.unlocked}), 'FC_DECRYPT_FAILED')
      await expectCryptoError(unwrapGroupKey({...opts, armored: wrapped.bob!, key: alice.unlocked}), 'FC_DECRYPT_FAILED')
      await expectCryptoError(unwrapGroupKey({...opts, armored: armor(flipMiddleByte(dearmor(wrapped.bob!))), key: bob.unlocked}), 'FC_DECRYPT_FAILED')
      await expectCryptoError(unwrapGroupKey({...opts, armored: 'not a message', key: bob.unlocked}), 'FC_BAD_MESSAGE')
    })

    it('refuses a key not signed by the member the server names as its maker', async () => {
      const key = generateGroupKey('group-a', 2)
      const wrapped = await wrapGroupKey({key, members: {bob: bob.publicKey}, signer: alice.unlocked})
      const wrongSigner = await expectCryptoError(
        unwrapGroupKey({armored: wrapped.bob!, key: bob.unlocked, signerPublicKey: mallory.publicKey, group: 'group-a', epoch: 2}),
        'FC_BAD_GROUP_KEY',
      )
      expect(wrongSigner.message).to.match(/not provably/)

      // Mallory makes her own key for the group and claims alice made it.
      const forged = await wrapGroupKey({key: generateGroupKey('group-a', 2), members: {bob: bob.publicKey}, signer: mallory.unlocked})
      await expectCryptoError(
        unwrapGroupKey({armored: forged.bob!, key: bob.unlocked, signerPublicKey: alice.publicKey, group: 'group-a', epoch: 2}),
        'FC_BAD_GROUP_KEY',
      )
    })

    it('refuses a key wrapped for another group or another epoch', async () => {
      const key = generateGroupKey('group-a', 2)
      const wrapped = await wrapGroupKey({key, members: {bob: bob.publicKey}, signer: alice.unlocked})
      const opts = {armored: wrapped.bob!, key: bob.unlocked, signerPublicKey: alice.publicKey}
      await expectCryptoError(unwrapGroupKey({...opts, group: 'group-a', epoch: 3}), 'FC_BAD_GROUP_KEY')
      await expectCryptoError(unwrapGroupKey({...opts, group: 'group-a', epoch: 1}), 'FC_BAD_GROUP_KEY')
      await expectCryptoError(unwrapGroupKey({...opts, group: 'group-b', epoch: 2}), 'FC_BAD_GROUP_KEY')
      expect((await unwrapGroupKey({...opts, group: 'group-a', epoch: 2})).id).to.equal(key.id)
    })

    it('does not take a signed chat message that happens to look like a group key for one', async () => {
      // Mallory gets alice to send her this exact text, then passes alice's
      // signed message on to bob as "alice's key" for a group, a key mallory knows.
      const text = JSON.stringify({fastchat: 'group-key', v: 1, group: 'group-a', epoch: 2, key: randomBytes(32).toString('base64')})
      const chat = await encryptText({text, to: [bob.publicKey], signer: alice.unlocked})
      const refused = await expectCryptoError(
        unwrapGroupKey({armored: chat, key: bob.unlocked, signerPublicKey: alice.publicKey, group: 'group-a', epoch: 2}),
        'FC_BAD_GROUP_KEY',
      )
      expect(refused.message).to.match(/not as a FastChat group key/)
      const plain = await encryptText({text: 'hello bob', to: [bob.publicKey], signer: alice.unlocked})
      await expectCryptoError(
        unwrapGroupKey({armored: plain, key: bob.unlocked, signerPublicKey: alice.publicKey, group: 'group-a', epoch: 2}),
        'FC_BAD_GROUP_KEY',
      )
    })

    it('refuses to wrap for nobody or for a member whose key is unusable, naming the member', async () => {
      const key = generateGroupKey('group-a', 1)
      await expectCryptoError(wrapGroupKey({key, members: {}, signer: alice.unlocked}), 'FC_BAD_KEY')
      const garbage = await expectCryptoError(wrapGroupKey({key, members: {bob: bob.publicKey, dave: 'not a key'}, signer: alice.unlocked}), 'FC_BAD_KEY')
      expect(garbage.message).to.include('"dave"')
      await expectCryptoError(wrapGroupKey({key, members: {bob: bob.privateKey}, signer: alice.unlocked}), 'FC_BAD_KEY')
    })
  })

  describe('group messages', () => {
    let key: GroupKey

    before(() => {
      key = generateGroupKey('group-a', 4)
    })

    it('round-trips text, verified by the sender', async () => {
      const text = 'Meet at 6, by the fountain. Café ☕ 👋\nSecond line.'
      const armored = await encryptGroupText({text, key, signer: alice.unlocked})
      expect(armored).to.match(/^-----BEGIN PGP MESSAGE-----/)
      expect(armored).to.not.include('fountain')
      const {text: decrypted, verification} = await decryptGroupText({armored, key, senderPublicKey: alice.publicKey})
      expect(decrypted).to.equal(text)
      expect(verification).to.deep.equal({status: 'valid', signerFingerprint: alice.fingerprint})
    })

    it('round-trips bytes, verified by the sender', async () => {
      const data = randomBytes(256 * 1024)
      const encrypted = await encryptGroupBytes({data, key, signer: bob.unlocked})
      expect(encrypted).to.be.instanceOf(Uint8Array)
      expect(Buffer.from(encrypted).indexOf(data.subarray(0, 64))).to.equal(-1)
      const decrypted = await decryptGroupBytes({data: encrypted, key, senderPublicKey: bob.publicKey})
      expect(Buffer.from(decrypted.data).equals(data)).to.equal(true)
      expect(decrypted.verification).to.deep.equal({status: 'valid', signerFingerprint: bob.fingerprint})
    })

    it('reports invalid, without throwing, when checked against a key other than the signer', async () => {
      const armored = await encryptGroupText({text: 'it is me, alice', key, signer: mallory.unlocked})
      const {text, verification} = await decryptGroupText({armored, key, senderPublicKey: alice.publicKey})
      expect(text).to.equal('it is me, alice')
      expect(verification.status).to.equal('invalid')
      expect(verification).to.have.property('reason').that.is.a('string').and.not.empty

      const bytes = await encryptGroupBytes({data: randomBytes(1024), key, signer: mallory.unlocked})
      expect((await decryptGroupBytes({data: bytes, key, senderPublicKey: alice.publicKey})).verification.status).to.equal('invalid')
    })

    it("cannot be read with another epoch's or another group's key", async () => {
      const next = generateGroupKey('group-a', 5)
      const text = await encryptGroupText({text: 'only for epoch 5', key: next, signer: alice.unlocked})
      const bytes = await encryptGroupBytes({data: randomBytes(4096), key: next, signer: alice.unlocked})
      await expectCryptoError(decryptGroupText({armored: text, key, senderPublicKey: alice.publicKey}), 'FC_DECRYPT_FAILED')
      await expectCryptoError(decryptGroupBytes({data: bytes, key, senderPublicKey: alice.publicKey}), 'FC_DECRYPT_FAILED')
      const otherGroup = generateGroupKey('group-b', 5)
      await expectCryptoError(decryptGroupText({armored: text, key: otherGroup, senderPublicKey: alice.publicKey}), 'FC_DECRYPT_FAILED')
    })

    it('refuses a tampered ciphertext', async () => {
      const text = 'Transfer 10 EUR to bob. '.repeat(40)
      const armored = await encryptGroupText({text, key, signer: alice.unlocked})
      // The untouched message survives the dearmor/armor round trip, so the failure below is the flip.
      expect((await decryptGroupText({armored: armor(dearmor(armored)), key, senderPublicKey: alice.publicKey})).text).to.equal(text)
      await expectCryptoError(decryptGroupText({armored: armor(flipMiddleByte(dearmor(armored))), key, senderPublicKey: alice.publicKey}), 'FC_DECRYPT_FAILED')

      const bytes = await encryptGroupBytes({data: randomBytes(64 * 1024), key, signer: alice.unlocked})
      await expectCryptoError(decryptGroupBytes({data: flipMiddleByte(bytes), key, senderPublicKey: alice.publicKey}), 'FC_DECRYPT_FAILED')
    })

    it('refuses what is not an encrypted message', async () => {
      await expectCryptoError(decryptGroupText({armored: 'hello group', key, senderPublicKey: alice.publicKey}), 'FC_BAD_MESSAGE')
      await expectCryptoError(decryptGroupText({armored: alice.publicKey, key, senderPublicKey: alice.publicKey}), 'FC_BAD_MESSAGE')
      await expectCryptoError(decryptGroupBytes({data: randomBytes(100), key, senderPublicKey: alice.publicKey}), 'FC_BAD_MESSAGE')
    })

    it('is one encrypted packet whatever the size of the group, unlike a message encrypted to each member', async () => {
      const text = 'the same text, to a small and to a larger group'
      const small = generateGroupKey('group-small', 1)
      const large = generateGroupKey('group-large', 1)
      await wrapGroupKey({key: small, members: {alice: alice.publicKey, bob: bob.publicKey}, signer: alice.unlocked})
      await wrapGroupKey({key: large, members: {alice: alice.publicKey, bob: bob.publicKey, carol: carol.publicKey, mallory: mallory.publicKey}, signer: alice.unlocked})
      const toSmall = dearmor(await encryptGroupText({text, key: small, signer: alice.unlocked}))
      const toLarge = dearmor(await encryptGroupText({text, key: large, signer: alice.unlocked}))
      expect(packetTags(toSmall)).to.deep.equal([18])
      expect(packetTags(toLarge)).to.deep.equal([18])
      // Equal but for the signature's MPIs, whose leading zero bits are not written.
      expect(Math.abs(toSmall.length - toLarge.length)).to.be.at.most(2)

      const oneToOneSmall = dearmor(await encryptText({text, to: [alice.publicKey, bob.publicKey], signer: alice.unlocked}))
      const oneToOneLarge = dearmor(await encryptText({text, to: [alice.publicKey, bob.publicKey, carol.publicKey, mallory.publicKey], signer: alice.unlocked}))
      expect(packetTags(oneToOneSmall)).to.deep.equal([1, 1, 18])
      expect(packetTags(oneToOneLarge)).to.deep.equal([1, 1, 1, 1, 18])
      expect(oneToOneLarge.length - oneToOneSmall.length).to.be.greaterThan(100)
      expect(toLarge.length).to.be.lessThan(oneToOneSmall.length)
    })
  })
})
