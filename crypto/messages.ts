import {createMessage, decrypt, encrypt, enums, readMessage, type Message, type PrivateKey, type PublicKey} from 'openpgp'

import {OPENPGP_CONFIG} from './config.js'
import {CryptoError} from './errors.js'
import {assertCanEncryptTo, assertCanSign} from './key-usability.js'
import {parsePublicKey} from './public-key-cache.js'
import {privateKeyOf, type UnlockedKey} from './unlocked-key.js'
import {verificationOf, type Verification} from './verification.js'

export type {Verification} from './verification.js'

/*
 * Sign-then-encrypt, one OpenPGP message per chat message or file. Every
 * message is signed by the sender; `to` lists every key that may read it,
 * which for FastChat is the recipient(s) *and* the sender's own key, so the
 * sender can read their history on another device.
 */

/** Encrypts and signs text; returns an armored PGP MESSAGE. Line endings come back as "\n" (OpenPGP text mode). */
export async function encryptText(opts: {text: string; to: string[]; signer: UnlockedKey}): Promise<string> {
  const {encryptionKeys, signingKey} = await prepareEncryption(opts.to, opts.signer)
  const message = await createMessage({text: opts.text})
  return encrypt({message, encryptionKeys, signingKeys: signingKey, format: 'armored', config: OPENPGP_CONFIG})
}

/** Encrypts and signs bytes (files, images); returns a binary OpenPGP message. */
export async function encryptBytes(opts: {data: Uint8Array; to: string[]; signer: UnlockedKey}): Promise<Uint8Array> {
  const {encryptionKeys, signingKey} = await prepareEncryption(opts.to, opts.signer)
  const message = await createMessage({binary: opts.data})
  return encrypt({message, encryptionKeys, signingKeys: signingKey, format: 'binary', config: OPENPGP_CONFIG})
}

/**
 * Decrypts an armored message and checks its signature against the pinned key
 * of the claimed sender. Throws FC_BAD_MESSAGE if it is not an encrypted
 * OpenPGP message, FC_DECRYPT_FAILED if `key` cannot open it (not a recipient,
 * or the ciphertext was modified). A bad or foreign signature is not thrown:
 * it comes back as `{status: 'invalid'}` so the caller can show a warning.
 */
export async function decryptText(opts: {armored: string; key: UnlockedKey; senderPublicKey: string}): Promise<{text: string; verification: Verification}> {
  const {privateKey, sender} = await prepareDecryption(opts.key, opts.senderPublicKey)
  const message = await read(() => readMessage({armoredMessage: opts.armored, config: OPENPGP_CONFIG}))
  assertAddressedTo(message, privateKey)
  const result = await decryptOrThrow(() =>
    decrypt({message, decryptionKeys: privateKey, verificationKeys: sender, expectSigned: false, format: 'utf8', config: OPENPGP_CONFIG}),
  )
  return {text: result.data, verification: await verificationOf(result.signatures, sender)}
}

/** decryptText for binary messages made by encryptBytes. */
export async function decryptBytes(opts: {data: Uint8Array; key: UnlockedKey; senderPublicKey: string}): Promise<{data: Uint8Array; verification: Verification}> {
  const {privateKey, sender} = await prepareDecryption(opts.key, opts.senderPublicKey)
  const message = await read(() => readMessage({binaryMessage: opts.data, config: OPENPGP_CONFIG}))
  assertAddressedTo(message, privateKey)
  const result = await decryptOrThrow(() =>
    decrypt({message, decryptionKeys: privateKey, verificationKeys: sender, expectSigned: false, format: 'binary', config: OPENPGP_CONFIG}),
  )
  return {data: result.data, verification: await verificationOf(result.signatures, sender)}
}

/** `to`: armored public keys of everyone who may decrypt, the sender's own included. */
async function prepareEncryption(to: string[], signer: UnlockedKey): Promise<{encryptionKeys: PublicKey[]; signingKey: PrivateKey}> {
  const signingKey = privateKeyOf(signer)
  if (to.length === 0) throw new CryptoError('FC_BAD_KEY', 'No recipients: pass at least the recipient and your own public key.')
  const unique = new Map<string, PublicKey>()
  for (const armored of to) {
    const key = await parsePublicKey(armored)
    unique.set(key.getFingerprint(), key)
  }
  const encryptionKeys = [...unique.values()]
  // openpgp would fail on these too, but with a generic error naming no key.
  for (const key of encryptionKeys) await assertCanEncryptTo(key)
  await assertCanSign(signingKey)
  return {encryptionKeys, signingKey}
}

async function prepareDecryption(key: UnlockedKey, senderPublicKey: string): Promise<{privateKey: PrivateKey; sender: PublicKey}> {
  return {privateKey: privateKeyOf(key), sender: await parsePublicKey(senderPublicKey)}
}

/**
 * Internal to crypto/ (not re-exported by index.ts): parses a message and
 * insists that it is encrypted. FC_BAD_MESSAGE otherwise.
 */
export async function read<T extends Message<string> | Message<Uint8Array>>(parse: () => Promise<T>): Promise<T> {
  let message: T
  try {
    message = await parse()
  } catch (error) {
    throw new CryptoError('FC_BAD_MESSAGE', 'Not an OpenPGP message.', {cause: error})
  }
  // A signed-only or literal message parses fine but was never secret; a chat
  // that says "end-to-end encrypted" must not display it as if it were.
  const encrypted = message.packets.filterByTag(
    enums.packet.symEncryptedIntegrityProtectedData,
    enums.packet.aeadEncryptedData,
    enums.packet.symmetricallyEncryptedData,
  )
  if (encrypted.length === 0) throw new CryptoError('FC_BAD_MESSAGE', 'Not an encrypted OpenPGP message.')
  return message
}

/** Internal to crypto/. Fails fast, with a clear reason, when none of the message's recipients is one of our keys. */
export function assertAddressedTo(message: Message<string> | Message<Uint8Array>, privateKey: PrivateKey): void {
  const recipients = message.getEncryptionKeyIDs()
  const ours = privateKey.getKeys().map((key) => key.getKeyID())
  // matchWildcard: an anonymous recipient (key ID 0) could be anyone, us included.
  if (!recipients.some((recipient) => ours.some((id) => recipient.equals(id, true)))) {
    throw new CryptoError('FC_DECRYPT_FAILED', 'This message is not encrypted to your key.')
  }
}

/** Internal to crypto/: runs an openpgp decrypt, any failure of which becomes FC_DECRYPT_FAILED. */
export async function decryptOrThrow<T>(run: () => Promise<T>): Promise<T> {
  try {
    return await run()
  } catch (error) {
    // With non-streamed input openpgp checks the integrity (MDC) of the whole
    // message before returning any plaintext, so a failure here means no
    // plaintext at all: wrong key, damaged or modified ciphertext.
    throw new CryptoError('FC_DECRYPT_FAILED', 'Cannot decrypt this message: it is damaged or was modified.', {cause: error})
  }
}
