import {createCipheriv, createDecipheriv, createPrivateKey, createPublicKey, diffieHellman, hkdfSync, type KeyObject, randomBytes} from 'node:crypto'

import type {PublicKey} from 'openpgp'

import {FULL_CONFIG} from './config.js'
import {CryptoError, describeError} from './errors.js'
import {formatFingerprint} from './fingerprint.js'
import {parsePublicKey} from './public-key-cache.js'
import {privateKeyOf, type UnlockedKey} from './unlocked-key.js'
import type {Verification} from './verification.js'

/*
 * Sealed read receipts: end to end encrypted and authenticated between the
 * reader and the sender of the messages read, in ~200 bytes instead of an
 * OpenPGP message's ~700.
 *
 * The key is the X25519 agreement of the reader's and the sender's OpenPGP
 * encryption subkeys (both Curve25519), through HKDF-SHA256 with both
 * subkeys' fingerprints in the order reader, sender. So only these two can
 * make or open it (the server, holding neither private key, can neither
 * read one nor forge one), and a receipt cannot be turned around: bob's
 * receipt to alice is under another key than alice's to bob. The text is
 * sealed with AES-256-GCM under a random 96-bit nonce.
 *
 * It is not signed, on purpose: the sender knows the reader made it (or the
 * sender did, who gains nothing by it), and nobody else can be shown that it
 * did; a read receipt needs no more. It has no forward secrecy (neither have
 * OpenPGP messages to a long-term key).
 *
 * Wire form: `fcr1.` then base64url (no padding) of nonce ‖ ciphertext ‖ tag.
 */

export const SEALED_RECEIPT_PREFIX = 'fcr1.'
const NONCE_BYTES = 12
const TAG_BYTES = 16
const INFO_LABEL = 'fastchat read receipt v1'

/** Seals `text` from `reader` to the owner of `to` (their armored public key). */
export async function sealReceipt(opts: {text: string; reader: UnlockedKey; to: string}): Promise<string> {
  const key = await receiptKey(opts.reader, await parsePublicKey(opts.to), 'seal')
  const nonce = randomBytes(NONCE_BYTES)
  const cipher = createCipheriv('aes-256-gcm', key, nonce, {authTagLength: TAG_BYTES})
  const sealed = Buffer.concat([nonce, cipher.update(opts.text, 'utf8'), cipher.final(), cipher.getAuthTag()])
  return SEALED_RECEIPT_PREFIX + sealed.toString('base64url')
}

/**
 * Opens a receipt sealed to `key` by the owner of `readerPublicKey`.
 * FC_BAD_MESSAGE if it is not a sealed receipt, FC_DECRYPT_FAILED if these
 * two keys did not seal it (another reader, another recipient, or modified).
 * An opened receipt was made by the reader: its verification is `valid`.
 */
export async function openReceipt(opts: {sealed: string; key: UnlockedKey; readerPublicKey: string}): Promise<{text: string; verification: Verification}> {
  if (!isSealedReceipt(opts.sealed)) throw new CryptoError('FC_BAD_MESSAGE', 'Not a sealed read receipt.')
  const bytes = Buffer.from(opts.sealed.slice(SEALED_RECEIPT_PREFIX.length), 'base64url')
  if (bytes.length < NONCE_BYTES + TAG_BYTES) throw new CryptoError('FC_BAD_MESSAGE', 'Not a sealed read receipt (too short).')
  const reader = await parsePublicKey(opts.readerPublicKey)
  const key = await receiptKey(opts.key, reader, 'open')
  const decipher = createDecipheriv('aes-256-gcm', key, bytes.subarray(0, NONCE_BYTES), {authTagLength: TAG_BYTES})
  decipher.setAuthTag(bytes.subarray(bytes.length - TAG_BYTES))
  let text: string
  try {
    text = Buffer.concat([decipher.update(bytes.subarray(NONCE_BYTES, bytes.length - TAG_BYTES)), decipher.final()]).toString('utf8')
  } catch (error) {
    throw new CryptoError('FC_DECRYPT_FAILED', 'This read receipt was not sealed by that reader to your key, or it was modified.', {cause: error})
  }
  return {text, verification: {status: 'valid', signerFingerprint: reader.getFingerprint()}}
}

export function isSealedReceipt(value: string): boolean {
  return value.startsWith(SEALED_RECEIPT_PREFIX) && /^[A-Za-z0-9_-]+$/.test(value.slice(SEALED_RECEIPT_PREFIX.length))
}

/**
 * The receipt key between `own` and `other`: sealing, `own` is the reader;
 * opening, `own` is the sender of the messages read and `other` the reader.
 */
async function receiptKey(own: UnlockedKey, other: PublicKey, direction: 'seal' | 'open'): Promise<Buffer> {
  const mine = await x25519Subkey(privateKeyOf(own), true)
  const theirs = await x25519Subkey(other, false)
  let shared: Buffer
  try {
    shared = diffieHellman({privateKey: mine.key, publicKey: theirs.key})
  } catch (error) {
    throw new CryptoError('FC_BAD_KEY', `No receipt key with ${formatFingerprint(other.getFingerprint())} (${describeError(error)}).`, {cause: error})
  }
  const [reader, recipient] = direction === 'seal' ? [mine, theirs] : [theirs, mine]
  const info = Buffer.concat([Buffer.from(INFO_LABEL), Buffer.from(reader.fingerprint, 'hex'), Buffer.from(recipient.fingerprint, 'hex')])
  return Buffer.from(hkdfSync('sha256', shared, Buffer.alloc(0), info, 32))
}

/** The key's valid encryption subkey as a node X25519 key (private when `secret`), with the subkey's fingerprint. */
async function x25519Subkey(key: PublicKey, secret: boolean): Promise<{key: KeyObject; fingerprint: string}> {
  let subkey
  try {
    subkey = await key.getEncryptionKey(undefined, undefined, undefined, FULL_CONFIG)
  } catch (error) {
    throw new CryptoError('FC_BAD_KEY', `Key ${formatFingerprint(key.getFingerprint())} cannot encrypt (${describeError(error)}).`, {cause: error})
  }
  const {algorithm, curve} = subkey.getAlgorithmInfo()
  const packet = subkey.keyPacket as unknown as {publicParams: {Q?: Uint8Array}; privateParams?: {d?: Uint8Array}}
  const q = packet.publicParams.Q
  if (algorithm !== 'ecdh' || curve !== 'curve25519Legacy' || !q || q.length !== 33 || q[0] !== 0x40) {
    throw new CryptoError('FC_BAD_KEY', `Key ${formatFingerprint(key.getFingerprint())} has no Curve25519 encryption subkey, which sealed receipts need.`)
  }
  const x = Buffer.from(q.subarray(1)).toString('base64url')
  if (!secret) return {key: createPublicKey({key: {kty: 'OKP', crv: 'X25519', x}, format: 'jwk'}), fingerprint: subkey.getFingerprint()}
  const d = packet.privateParams?.d
  if (!d || d.length !== 32) throw new CryptoError('FC_BAD_KEY', 'The private encryption subkey is not unlocked.')
  // OpenPGP keeps a Curve25519Legacy secret as a big-endian MPI (RFC 9580); X25519 takes it little-endian.
  const privateKey = createPrivateKey({key: {kty: 'OKP', crv: 'X25519', d: Buffer.from(d).reverse().toString('base64url'), x}, format: 'jwk'})
  return {key: privateKey, fingerprint: subkey.getFingerprint()}
}
