import {readKeys, type PublicKey} from 'openpgp'

import {OPENPGP_CONFIG} from './config.js'
import {CryptoError} from './errors.js'

/**
 * Parsed public keys, by their armored text. A CLI encrypts to the same few
 * contacts over and over, and parsing (armor, CRC, packets) is the bulk of the
 * per-message cost besides the crypto itself. Bounded, least recently used
 * first out, so a long-running process talking to many users stays small.
 *
 * Only the *parse* is cached. Whether a key is usable right now (expired,
 * revoked) depends on the clock, so callers check that on every use.
 * openpgp's encrypt/decrypt/verify only read key objects, so sharing one
 * parsed key between calls is safe.
 */
const MAX_ENTRIES = 1_000
const parsed = new Map<string, PublicKey>()

export async function parsePublicKey(armored: string): Promise<PublicKey> {
  const hit = parsed.get(armored)
  if (hit) {
    // Re-insert to mark it most recently used (a Map iterates in insertion order).
    parsed.delete(armored)
    parsed.set(armored, hit)
    return hit
  }
  const key = await parseUncached(armored)
  parsed.set(armored, key)
  if (parsed.size > MAX_ENTRIES) parsed.delete(parsed.keys().next().value as string)
  return key
}

async function parseUncached(armored: string): Promise<PublicKey> {
  if (typeof armored !== 'string' || !armored.includes('-----BEGIN PGP')) {
    throw new CryptoError('FC_BAD_KEY', 'Not an armored OpenPGP public key.')
  }
  let keys
  try {
    keys = await readKeys({armoredKeys: armored, config: OPENPGP_CONFIG})
  } catch (error) {
    throw new CryptoError('FC_BAD_KEY', 'Not a readable OpenPGP public key.', {cause: error})
  }
  // readKey() would silently take the first of several keys; a pinned contact
  // key must be exactly one key, or what we show and what we use could differ.
  if (keys.length !== 1) {
    throw new CryptoError('FC_BAD_KEY', `Expected exactly one public key, found ${keys.length}.`)
  }
  const key = keys[0]!
  if (key.isPrivate()) {
    throw new CryptoError('FC_BAD_KEY', 'This is a private key; only the public key may be shared or pinned.')
  }
  return key
}
