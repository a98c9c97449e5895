import type {PrivateKey} from 'openpgp'

import {CryptoError} from './errors.js'

/**
 * A private key, decrypted, that callers can pass around but not look into.
 * The openpgp PrivateKey lives in a module-private WeakMap: it never shows up
 * in a console.log, JSON.stringify or spread of the handle, and it is garbage
 * collected with the handle. Since TypeScript types are structural, a plain
 * `{fingerprint, publicKey}` object also type-checks as an UnlockedKey; the
 * WeakMap lookup is what tells a real handle from a look-alike.
 */
export interface UnlockedKey {
  /** The primary key fingerprint, lowercase hex. */
  readonly fingerprint: string
  /** The armored public part, what to publish and what to encrypt to for one's own copy. */
  readonly publicKey: string
}

const privateKeys = new WeakMap<UnlockedKey, PrivateKey>()

export function createUnlockedKey(privateKey: PrivateKey): UnlockedKey {
  const handle: UnlockedKey = Object.freeze({
    fingerprint: privateKey.getFingerprint(),
    publicKey: privateKey.toPublic().armor(),
  })
  privateKeys.set(handle, privateKey)
  return handle
}

export function privateKeyOf(handle: UnlockedKey): PrivateKey {
  const key = privateKeys.get(handle)
  if (!key) throw new CryptoError('FC_BAD_KEY', 'Not an unlocked key: use unlockPrivateKey() to get one.')
  return key
}
