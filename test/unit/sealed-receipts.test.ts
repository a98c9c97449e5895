import {expect} from 'chai'

import {CryptoError, encryptText, generateKeyPair, isSealedReceipt, openReceipt, sealReceipt, unlockPrivateKey} from '../../crypto/index.js'
import {expectCryptoError} from '../helpers/armor.js'
import {loadFixtureKey, type FixtureKey} from '../helpers/keys.js'

// Read receipts sealed between the reader and the sender (crypto/receipts.ts): X25519 of their OpenPGP
// encryption subkeys, HKDF with both subkeys' fingerprints in the order reader, sender, then AES-256-GCM.
describe('sealed read receipts', () => {
  let alice: FixtureKey
  let bob: FixtureKey
  let carol: FixtureKey
  let mallory: FixtureKey
  const text = JSON.stringify({v: 1, type: 'read', to: 'alice', messages: ['6f1c2a8e-1d1b-4f3e-9a57-0c4ad8f0c1b2'], conversation: {user: 'bob'}})

  before(async () => {
    ;[alice, bob, carol, mallory] = await Promise.all((['alice', 'bob', 'carol', 'mallory'] as const).map((name) => loadFixtureKey(name)))
  })

  it('opens for the sender with the reader pinned, a quarter the size of an OpenPGP message', async () => {
    const sealed = await sealReceipt({text, reader: bob.unlocked, to: alice.publicKey})
    expect(isSealedReceipt(sealed)).to.equal(true)
    const opened = await openReceipt({sealed, key: alice.unlocked, readerPublicKey: bob.publicKey})
    expect(opened.text).to.equal(text)
    expect(opened.verification).to.deep.equal({status: 'valid', signerFingerprint: bob.fingerprint})
    const openpgp = await encryptText({text, to: [alice.publicKey], signer: bob.unlocked})
    expect(sealed.length).to.be.below(openpgp.length / 3)
  })

  it('is a new ciphertext each time (a random nonce)', async () => {
    const [one, two] = await Promise.all([1, 2].map(() => sealReceipt({text, reader: bob.unlocked, to: alice.publicKey})))
    expect(one).to.not.equal(two)
  })

  it('does not open with any other pair of keys: another reader claimed, another recipient, or turned around', async () => {
    const sealed = await sealReceipt({text, reader: bob.unlocked, to: alice.publicKey})
    // The server names mallory as its reader, or hands it to carol.
    await expectCryptoError(openReceipt({sealed, key: alice.unlocked, readerPublicKey: mallory.publicKey}), 'FC_DECRYPT_FAILED')
    await expectCryptoError(openReceipt({sealed, key: carol.unlocked, readerPublicKey: bob.publicKey}), 'FC_DECRYPT_FAILED')
    // Bob's receipt to alice passed back to bob as alice's: the key differs with the direction.
    await expectCryptoError(openReceipt({sealed, key: bob.unlocked, readerPublicKey: alice.publicKey}), 'FC_DECRYPT_FAILED')
  })

  it('cannot be forged without the reader\'s private key: one sealed by mallory to alice does not open as bob\'s', async () => {
    const forged = await sealReceipt({text, reader: mallory.unlocked, to: alice.publicKey})
    await expectCryptoError(openReceipt({sealed: forged, key: alice.unlocked, readerPublicKey: bob.publicKey}), 'FC_DECRYPT_FAILED')
  })

  it('refuses a modified receipt, a truncated one and one that is not a sealed receipt', async () => {
    const sealed = await sealReceipt({text, reader: bob.unlocked, to: alice.publicKey})
    const body = Buffer.from(sealed.slice('fcr1.'.length), 'base64url')
    body[20]! ^= 0x01
    await expectCryptoError(openReceipt({sealed: `fcr1.${body.toString('base64url')}`, key: alice.unlocked, readerPublicKey: bob.publicKey}), 'FC_DECRYPT_FAILED')
    await expectCryptoError(openReceipt({sealed: 'fcr1.AAAA', key: alice.unlocked, readerPublicKey: bob.publicKey}), 'FC_BAD_MESSAGE')
    await expectCryptoError(openReceipt({sealed: 'fcr1.not base64!', key: alice.unlocked, readerPublicKey: bob.publicKey}), 'FC_BAD_MESSAGE')
    await expectCryptoError(openReceipt({sealed: '-----BEGIN PGP MESSAGE-----', key: alice.unlocked, readerPublicKey: bob.publicKey}), 'FC_BAD_MESSAGE')
  })

  it('works with a freshly generated key as with the fixtures', async () => {
    const pair = await generateKeyPair({username: 'dave', passphrase: 'a passphrase'})
    const dave = await unlockPrivateKey(pair.privateKey, 'a passphrase')
    const sealed = await sealReceipt({text, reader: dave, to: alice.publicKey})
    expect((await openReceipt({sealed, key: alice.unlocked, readerPublicKey: pair.publicKey})).text).to.equal(text)
    const back = await sealReceipt({text, reader: alice.unlocked, to: pair.publicKey})
    expect((await openReceipt({sealed: back, key: dave, readerPublicKey: alice.publicKey})).text).to.equal(text)
  })

  it('needs an unlocked private key, not a look-alike', async () => {
    const error = await sealReceipt({text, reader: {fingerprint: bob.fingerprint, publicKey: bob.publicKey}, to: alice.publicKey}).catch((e: unknown) => e)
    expect(error).to.be.instanceOf(CryptoError)
  })
})
