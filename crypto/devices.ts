import {createMessage, decrypt, encrypt, enums, generateKey, type PartialConfig, readMessage} from 'openpgp'

import {OPENPGP_CONFIG} from './config.js'
import {CryptoError} from './errors.js'
import {decryptOrThrow, read} from './messages.js'
import {createUnlockedKey, type UnlockedKey} from './unlocked-key.js'

/*
 * The crypto of linking a device (docs/security.md, "Devices"). The new
 * device makes a one-time key pair K and a short secret S (the second half of
 * the code a person types on the approving device; the server never sees it).
 * It proves to the approver which K is its own with a "check": the text
 * `fastchat-link/1 <fingerprint of K>` encrypted under S with Argon2 (so the
 * server, which relays the check, can neither read nor forge it, and cannot
 * guess S offline at any useful speed). The approver sends the payload (the
 * private key, still passphrase-protected, and the pins) encrypted to K and
 * signed with the account's key.
 */

/** The text a check carries: the format's version and the one-time key's fingerprint. */
export const LINK_CHECK_PREFIX = 'fastchat-link/1 '

/**
 * Argon2id for the check: 3 passes, 4 lanes, 2^16 KiB (64 MiB), openpgp's
 * defaults and RFC 9106's second recommended setting. The same exponent is the
 * most a check may ask of the approver: a check made by a hostile server with
 * a larger memory cost is refused, not computed.
 */
const LINK_ARGON2 = {passes: 3, parallelism: 4, memoryExponent: 16}
const CHECK_CONFIG: PartialConfig = {...OPENPGP_CONFIG, s2kType: enums.s2k.argon2 as const, s2kArgon2Params: LINK_ARGON2, maxArgon2MemoryExponent: LINK_ARGON2.memoryExponent}

export interface OneTimeKey {
  /** Armored public key, sent to the server with the link request. */
  publicKey: string
  /** Lowercase hex, as the check names it. */
  fingerprint: string
  /** The private half: it only ever lives in this process's memory. */
  key: UnlockedKey
}

/** A fresh key pair for one link (Ed25519 and Curve25519, as account keys), never written anywhere. */
export async function generateOneTimeKey(): Promise<OneTimeKey> {
  const {privateKey} = await generateKey({type: 'ecc', curve: 'curve25519Legacy', userIDs: [{name: 'fastchat device link'}], format: 'object', config: OPENPGP_CONFIG})
  const key = createUnlockedKey(privateKey)
  return {publicKey: key.publicKey, fingerprint: key.fingerprint, key}
}

/** The check for a link: `fastchat-link/1 <fingerprint>` encrypted under `secret` (Argon2 S2K). Armored. */
export async function sealLinkCheck(secret: string, fingerprint: string): Promise<string> {
  const message = await createMessage({text: `${LINK_CHECK_PREFIX}${fingerprint}`})
  return encrypt({message, passwords: [secret], format: 'armored', config: CHECK_CONFIG})
}

/**
 * The fingerprint a check names, if `secret` opens it. FC_DECRYPT_FAILED when
 * it does not (a mistyped code), FC_BAD_MESSAGE when it is not a check at all.
 */
export async function openLinkCheck(armored: string, secret: string): Promise<string> {
  const message = await read(() => readMessage({armoredMessage: armored, config: CHECK_CONFIG}))
  const result = await decryptOrThrow(() => decrypt({message, passwords: [secret], format: 'utf8', config: CHECK_CONFIG}))
  const text = String(result.data)
  if (!text.startsWith(LINK_CHECK_PREFIX)) throw new CryptoError('FC_BAD_MESSAGE', 'Not a FastChat device link check.')
  return text.slice(LINK_CHECK_PREFIX.length).trim().toLowerCase()
}

/** Whether two fingerprints are the same key (lowercase hex, spaces ignored). */
export function sameFingerprint(a: string, b: string): boolean {
  const norm = (f: string) => f.replace(/\s+/g, '').toLowerCase()
  return norm(a) === norm(b) && norm(a).length > 0
}
