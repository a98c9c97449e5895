import type {PublicKey} from 'openpgp'

import {FULL_CONFIG} from './config.js'
import {CryptoError, describeError} from './errors.js'
import {formatFingerprint} from './fingerprint.js'

/*
 * Whether a key can be used *now*. Checked on every use, never cached,
 * because the answer changes with the clock (expiry) and with the key's
 * signatures (revocation). Each check throws FC_BAD_KEY with openpgp's reason.
 */

/** A contact key: valid primary key, and it can both encrypt and sign. */
export async function assertUsable(key: PublicKey): Promise<void> {
  await check(key, 'is not valid', () => key.verifyPrimaryKey(undefined, undefined, FULL_CONFIG))
  await assertCanEncryptTo(key)
  await assertCanSign(key)
}

export async function assertCanEncryptTo(key: PublicKey): Promise<void> {
  await check(key, 'cannot encrypt', () => key.getEncryptionKey(undefined, undefined, undefined, FULL_CONFIG))
}

export async function assertCanSign(key: PublicKey): Promise<void> {
  await check(key, 'cannot sign', () => key.getSigningKey(undefined, undefined, undefined, FULL_CONFIG))
}

async function check(key: PublicKey, what: string, probe: () => Promise<unknown>): Promise<void> {
  try {
    await probe()
  } catch (error) {
    const name = formatFingerprint(key.getFingerprint())
    throw new CryptoError('FC_BAD_KEY', `Key ${name} ${what} (${describeError(error)}).`, {cause: error})
  }
}
