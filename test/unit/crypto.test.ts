import {randomBytes} from 'node:crypto'

import {expect} from 'chai'

import {
  CryptoError,
  decryptBytes,
  decryptText,
  encryptBytes,
  encryptText,
  formatFingerprint,
  generateKeyPair,
  readPublicKey,
  unlockPrivateKey,
  type UnlockedKey,
} from '../../crypto/index.js'
import {armor, dearmor, expectCryptoError, flipMiddleByte} from '../helpers/armor.js'
import {FIXTURE_PASSPHRASE, loadFixtureKey, type FixtureKey} from '../helpers/keys.js'

describe('crypto', () => {
  let alice: FixtureKey
  let bob: FixtureKey
  let carol: FixtureKey
  let mallory: FixtureKey

  before(async () => {
    ;[alice, bob, carol, mallory] = await Promise.all((['alice', 'bob', 'carol', 'mallory'] as const).map((name) => loadFixtureKey(name)))
  })

  describe('keys', () => {
    it('generates a key pair whose public key reads back with the same fingerprint and user ID', async () => {
      const pair = await generateKeyPair({username: 'dave', passphrase: 'a passphrase'})
      expect(pair.publicKey).to.match(/^-----BEGIN PGP PUBLIC KEY BLOCK-----/)
      expect(pair.privateKey).to.match(/^-----BEGIN PGP PRIVATE KEY BLOCK-----/)
      expect(pair.fingerprint).to.match(/^[0-9a-f]{40}$/)

      const info = await readPublicKey(pair.publicKey)
      expect(info.fingerprint).to.equal(pair.fingerprint)
      expect(info.userIds).to.deep.equal(['dave'])

      const unlocked = await unlockPrivateKey(pair.privateKey, 'a passphrase')
      expect(unlocked.fingerprint).to.equal(pair.fingerprint)
      expect((await readPublicKey(unlocked.publicKey)).fingerprint).to.equal(pair.fingerprint)
    })

    it('protects a generated private key with the passphrase, and refuses an empty one', async () => {
      const pair = await generateKeyPair({username: 'erin', passphrase: 'right'})
      await expectCryptoError(unlockPrivateKey(pair.privateKey, 'wrong'), 'FC_BAD_PASSPHRASE')
      await expectCryptoError(generateKeyPair({username: 'erin', passphrase: ''}), 'FC_BAD_PASSPHRASE')
    })

    it('formats a fingerprint as uppercase groups of four', () => {
      expect(formatFingerprint(alice.fingerprint)).to.match(/^(?:[0-9A-F]{4} ){9}[0-9A-F]{4}$/)
      expect(formatFingerprint(alice.fingerprint).replaceAll(' ', '')).to.equal(alice.fingerprint.toUpperCase())
      expect(formatFingerprint('1a2b3c4d')).to.equal('1A2B 3C4D')
      expect(() => formatFingerprint('not hex!')).to.throw(CryptoError)
    })

    it('reads the same key to the same armored text and fingerprint whatever its line endings', async () => {
      const info = await readPublicKey(alice.publicKey.replaceAll('\n', '\r\n'))
      expect(info.fingerprint).to.equal(alice.fingerprint)
      expect(info.armored).to.equal((await readPublicKey(alice.publicKey)).armored)
      expect(info.userIds).to.deep.equal(['alice'])
    })

    it('rejects garbage, a private key and a block of two keys as a public key', async () => {
      await expectCryptoError(readPublicKey('hello'), 'FC_BAD_KEY')
      await expectCryptoError(readPublicKey('-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nAAAA\n-----END PGP PUBLIC KEY BLOCK-----\n'), 'FC_BAD_KEY')
      const privateAsPublic = await expectCryptoError(readPublicKey(alice.privateKey), 'FC_BAD_KEY')
      expect(privateAsPublic.message).to.match(/private key/)
      const twoKeys = armor(Buffer.concat([dearmor(alice.publicKey), dearmor(bob.publicKey)]), 'PUBLIC KEY BLOCK')
      // The hand-made armor is right: each half alone reads fine.
      expect((await readPublicKey(armor(dearmor(bob.publicKey), 'PUBLIC KEY BLOCK'))).fingerprint).to.equal(bob.fingerprint)
      await expectCryptoError(readPublicKey(twoKeys), 'FC_BAD_KEY')
    })

    it('refuses a wrong passphrase, garbage and a public key when unlocking', async () => {
      await expectCryptoError(unlockPrivateKey(alice.privateKey, 'Correct horse battery staple'), 'FC_BAD_PASSPHRASE')
      await expectCryptoError(unlockPrivateKey('garbage', FIXTURE_PASSPHRASE), 'FC_BAD_KEY')
      await expectCryptoError(unlockPrivateKey(alice.publicKey, FIXTURE_PASSPHRASE), 'FC_BAD_KEY')
      const unlocked = await unlockPrivateKey(alice.privateKey, FIXTURE_PASSPHRASE)
      expect(unlocked.fingerprint).to.equal(alice.fingerprint)
    })

    it('keeps the private key out of the unlocked handle and refuses look-alike handles', async () => {
      const serialized = JSON.stringify(alice.unlocked)
      expect(serialized).to.not.include('PRIVATE')
      expect(Object.keys(alice.unlocked).sort()).to.deep.equal(['fingerprint', 'publicKey'])
      const lookAlike: UnlockedKey = {fingerprint: alice.unlocked.fingerprint, publicKey: alice.unlocked.publicKey}
      await expectCryptoError(encryptText({text: 'hi', to: [bob.publicKey], signer: lookAlike}), 'FC_BAD_KEY')
    })
  })

  describe('text messages', () => {
    it('lets every recipient read a message and verifies the sender; refuses anyone else', async () => {
      const text = 'Meet at 6, by the fountain. Café ☕ 👋\nSecond line.'
      const armored = await encryptText({text, to: [bob.publicKey, alice.publicKey], signer: alice.unlocked})
      expect(armored).to.match(/^-----BEGIN PGP MESSAGE-----/)
      expect(armored).to.not.include('fountain')

      const forBob = await decryptText({armored, key: bob.unlocked, senderPublicKey: alice.publicKey})
      expect(forBob.text).to.equal(text)
      expect(forBob.verification).to.deep.equal({status: 'valid', signerFingerprint: alice.fingerprint})

      const forAlice = await decryptText({armored, key: alice.unlocked, senderPublicKey: alice.publicKey})
      expect(forAlice.text).to.equal(text)
      expect(forAlice.verification).to.deep.equal({status: 'valid', signerFingerprint: alice.fingerprint})

      await expectCryptoError(decryptText({armored, key: carol.unlocked, senderPublicKey: alice.publicKey}), 'FC_DECRYPT_FAILED')
    })

    it('reports invalid, not valid, when checked against a different sender key than the signer', async () => {
      const armored = await encryptText({text: 'from alice', to: [bob.publicKey, alice.publicKey], signer: alice.unlocked})
      const {text, verification} = await decryptText({armored, key: bob.unlocked, senderPublicKey: mallory.publicKey})
      expect(text).to.equal('from alice')
      expect(verification.status).to.equal('invalid')
      expect(verification).to.have.property('reason').that.is.a('string').and.not.empty
    })

    it('reports invalid when mallory signs a message that claims to come from alice', async () => {
      const armored = await encryptText({text: 'it is me, alice', to: [bob.publicKey, mallory.publicKey], signer: mallory.unlocked})
      const {verification} = await decryptText({armored, key: bob.unlocked, senderPublicKey: alice.publicKey})
      expect(verification.status).to.equal('invalid')
      // Against her own key, mallory's signature is fine: the difference is the key, not a broken message.
      const honest = await decryptText({armored, key: bob.unlocked, senderPublicKey: mallory.publicKey})
      expect(honest.verification).to.deep.equal({status: 'valid', signerFingerprint: mallory.fingerprint})
    })

    it('never yields a valid plaintext from a tampered ciphertext', async () => {
      const text = 'Transfer 10 EUR to bob. '.repeat(40)
      const armored = await encryptText({text, to: [bob.publicKey, alice.publicKey], signer: alice.unlocked})
      // The untouched message survives the dearmor/armor round trip, so the failure below is the flip.
      const rearmored = armor(dearmor(armored))
      expect((await decryptText({armored: rearmored, key: bob.unlocked, senderPublicKey: alice.publicKey})).text).to.equal(text)

      const tampered = armor(flipMiddleByte(dearmor(armored)))
      let outcome: Awaited<ReturnType<typeof decryptText>>
      try {
        outcome = await decryptText({armored: tampered, key: bob.unlocked, senderPublicKey: alice.publicKey})
      } catch (error) {
        expect(error).to.be.instanceOf(CryptoError)
        expect((error as CryptoError).code).to.equal('FC_DECRYPT_FAILED')
        return
      }
      expect(outcome.verification.status, 'a tampered message must never verify').to.not.equal('valid')
      expect(outcome.text).to.not.equal(text)
    })

    it('refuses what is not an encrypted message', async () => {
      await expectCryptoError(decryptText({armored: 'hello bob', key: bob.unlocked, senderPublicKey: alice.publicKey}), 'FC_BAD_MESSAGE')
      await expectCryptoError(decryptText({armored: alice.publicKey, key: bob.unlocked, senderPublicKey: alice.publicKey}), 'FC_BAD_MESSAGE')
    })

    it('refuses to encrypt to nobody, to a private key or to garbage', async () => {
      await expectCryptoError(encryptText({text: 'hi', to: [], signer: alice.unlocked}), 'FC_BAD_KEY')
      await expectCryptoError(encryptText({text: 'hi', to: [bob.privateKey], signer: alice.unlocked}), 'FC_BAD_KEY')
      await expectCryptoError(encryptText({text: 'hi', to: [bob.publicKey, 'not a key'], signer: alice.unlocked}), 'FC_BAD_KEY')
    })

    it('refuses a garbage sender key when decrypting', async () => {
      const armored = await encryptText({text: 'hi', to: [bob.publicKey], signer: alice.unlocked})
      await expectCryptoError(decryptText({armored, key: bob.unlocked, senderPublicKey: 'alice'}), 'FC_BAD_KEY')
    })
  })

  describe('binary messages', () => {
    const PNG_MAGIC = Uint8Array.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])

    function pngLike(size: number): Buffer {
      const data = randomBytes(size)
      data.set(PNG_MAGIC, 0)
      return data
    }

    it('round-trips 1 MiB byte for byte, verified, and hides what the file is', async () => {
      const data = pngLike(1024 * 1024)
      const encrypted = await encryptBytes({data, to: [bob.publicKey, alice.publicKey], signer: alice.unlocked})
      expect(encrypted).to.be.instanceOf(Uint8Array)
      expect(Buffer.from(encrypted.subarray(0, PNG_MAGIC.length)).equals(PNG_MAGIC)).to.equal(false)
      expect(Buffer.from(encrypted).indexOf(data.subarray(0, 64))).to.equal(-1)

      const decrypted = await decryptBytes({data: encrypted, key: bob.unlocked, senderPublicKey: alice.publicKey})
      expect(decrypted.data.length).to.equal(data.length)
      expect(Buffer.from(decrypted.data).equals(data)).to.equal(true)
      expect(decrypted.verification).to.deep.equal({status: 'valid', signerFingerprint: alice.fingerprint})
    })

    it('refuses a non-recipient, a tampered file and bytes that are no message', async () => {
      const data = pngLike(64 * 1024)
      const encrypted = await encryptBytes({data, to: [bob.publicKey], signer: alice.unlocked})
      await expectCryptoError(decryptBytes({data: encrypted, key: carol.unlocked, senderPublicKey: alice.publicKey}), 'FC_DECRYPT_FAILED')
      await expectCryptoError(decryptBytes({data: flipMiddleByte(encrypted), key: bob.unlocked, senderPublicKey: alice.publicKey}), 'FC_DECRYPT_FAILED')
      // Bytes that are no message: fixed ones. Random bytes after the PNG signature parse, now and then, as packets that
      // include an encrypted one (0x89 is an old-format packet header), and then fail as "not encrypted to your key".
      const notAMessage = Buffer.concat([PNG_MAGIC, Buffer.alloc(64 * 1024)])
      await expectCryptoError(decryptBytes({data: notAMessage, key: bob.unlocked, senderPublicKey: alice.publicKey}), 'FC_BAD_MESSAGE')
    })

    it('reports invalid for a file signed by someone other than the claimed sender', async () => {
      const encrypted = await encryptBytes({data: pngLike(1024), to: [bob.publicKey], signer: mallory.unlocked})
      const {verification} = await decryptBytes({data: encrypted, key: bob.unlocked, senderPublicKey: alice.publicKey})
      expect(verification.status).to.equal('invalid')
    })
  })
})
