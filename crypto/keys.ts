import {decryptKey, generateKey, readPrivateKeys, type PrivateKey} from 'openpgp'

import {OPENPGP_CONFIG} from './config.js'
import {CryptoError, describeError} from './errors.js'
import {assertUsable} from './key-usability.js'
import {parsePublicKey} from './public-key-cache.js'
import {createUnlockedKey, type UnlockedKey} from './unlocked-key.js'

export type {UnlockedKey} from './unlocked-key.js'
export {formatFingerprint, normalizeFingerprint} from './fingerprint.js'

export interface GeneratedKeyPair {
  /** Armored public key: the part to publish. */
  publicKey: string
  /** Armored private key, encrypted with the passphrase. */
  privateKey: string
  /** Primary key fingerprint, lowercase hex. */
  fingerprint: string
}

/**
 * A v4 key: an Ed25519 (legacy EdDSA) primary key that certifies and signs,
 * and a Curve25519 (legacy ECDH) subkey that encrypts. This is the openpgp 6
 * default for v4 keys and what GnuPG 2.4's `--quick-gen-key` makes, so users
 * can take their key to gpg and back; the newer RFC 9580 Ed25519/X25519
 * algorithms (`type: 'curve25519'`) are not readable by GnuPG before 2.5.
 * The key does not expire.
 */
export async function generateKeyPair(opts: {username: string; passphrase: string}): Promise<GeneratedKeyPair> {
  if (opts.username.trim() === '') throw new CryptoError('FC_BAD_KEY', 'A key needs a username.')
  // openpgp leaves the private key unencrypted when the passphrase is empty.
  if (opts.passphrase === '') throw new CryptoError('FC_BAD_PASSPHRASE', 'The passphrase must not be empty.')
  const {privateKey, publicKey} = await generateKey({
    type: 'ecc',
    curve: 'curve25519Legacy',
    userIDs: [{name: opts.username}],
    passphrase: opts.passphrase,
    format: 'object',
    config: OPENPGP_CONFIG,
  })
  return {publicKey: publicKey.armor(), privateKey: privateKey.armor(), fingerprint: publicKey.getFingerprint()}
}

export interface PublicKeyInfo {
  /** The key re-armored by openpgp: the same key always gives the same text, whatever the input's line endings or headers. */
  armored: string
  /** Primary key fingerprint, lowercase hex. */
  fingerprint: string
  userIds: string[]
}

/**
 * Reads a contact's public key and checks that it is usable now: exactly one
 * key, public, not revoked or expired, with a valid encryption key (to write
 * to them) and signing key (to verify what they write).
 */
export async function readPublicKey(armored: string): Promise<PublicKeyInfo> {
  const key = await parsePublicKey(armored)
  await assertUsable(key)
  return {armored: key.armor(), fingerprint: key.getFingerprint(), userIds: key.getUserIDs()}
}

/**
 * Decrypts an armored private key with its passphrase. Costly on purpose: the
 * passphrase goes through the key's S2K function (iterated and salted SHA-256
 * for keys we make; argon2 keys from elsewhere are accepted too).
 */
export async function unlockPrivateKey(armoredPrivate: string, passphrase: string): Promise<UnlockedKey> {
  const locked = await readLockedPrivateKey(armoredPrivate)
  let unlocked: PrivateKey
  try {
    unlocked = await decryptKey({privateKey: locked, passphrase, config: OPENPGP_CONFIG})
  } catch (error) {
    // The one openpgp message we have to look at: a wrong passphrase and a
    // damaged key both surface as a plain Error from decryptKey.
    if (/Incorrect key passphrase/i.test(describeError(error))) {
      throw new CryptoError('FC_BAD_PASSPHRASE', 'Wrong passphrase for this private key.', {cause: error})
    }
    throw new CryptoError('FC_BAD_KEY', `Cannot unlock this private key (${describeError(error)}).`, {cause: error})
  }
  return createUnlockedKey(unlocked)
}

async function readLockedPrivateKey(armored: string): Promise<PrivateKey> {
  let keys: PrivateKey[]
  try {
    keys = await readPrivateKeys({armoredKeys: armored, config: OPENPGP_CONFIG})
  } catch (error) {
    throw new CryptoError('FC_BAD_KEY', 'Not a readable OpenPGP private key.', {cause: error})
  }
  if (keys.length !== 1) throw new CryptoError('FC_BAD_KEY', `Expected exactly one private key, found ${keys.length}.`)
  const key = keys[0]!
  // A key stored without a passphrase would "unlock" with any passphrase;
  // refuse it rather than give a false sense of protection.
  if (key.isDecrypted()) throw new CryptoError('FC_BAD_KEY', 'This private key is not protected by a passphrase.')
  return key
}
