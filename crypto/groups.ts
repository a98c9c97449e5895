import {createHash, webcrypto} from 'node:crypto'

import {createMessage, decrypt, encrypt, readMessage, sign, type PublicKey, type RawNotation, type SessionKey} from 'openpgp'

import {OPENPGP_CONFIG} from './config.js'
import {CryptoError} from './errors.js'
import {assertCanEncryptTo, assertCanSign} from './key-usability.js'
import {assertAddressedTo, decryptOrThrow, read} from './messages.js'
import {parsePublicKey} from './public-key-cache.js'
import {privateKeyOf, type UnlockedKey} from './unlocked-key.js'
import {verificationOf, type Verification} from './verification.js'

/*
 * Group messaging with key epochs. Each epoch of a group has one random
 * AES-256 key. One member's client makes it, signs it once and encrypts that
 * signed payload to every member of the epoch (wrapGroupKey); each member
 * opens their copy (unwrapGroupKey). A group message is then an ordinary
 * signed OpenPGP message whose session key *is* the group key: one SEIPD
 * packet and no PKESK packet, so its size and cost do not depend on how many
 * members the group has. GnuPG reads one with
 * `gpg --decrypt --override-session-key 9:<hex of the key>`.
 */

/** An epoch's group key: 32 random bytes used as the OpenPGP AES-256 session key. Opaque outside crypto/. */
export interface GroupKey {
  readonly group: string
  readonly epoch: number
  /** Short hex id for display: the first 16 hex digits of SHA-256 of the key bytes, grouped like 'ab12 cd34 ef56 7890'. */
  readonly id: string
}

const KEY_BYTES = 32
const SESSION_ALGORITHM = 'aes256' as const

/** The key bytes, out of sight (and out of console.log / JSON) the way unlocked-key.ts hides private keys. */
const keyBytes = new WeakMap<GroupKey, Uint8Array>()

/**
 * Signed into every wrapped key (hashed area, not critical so gpg only shows
 * it). Without it a signed wrapped key would be told apart from any other
 * signed message only by its content, and a member who can get another to
 * send an exact text (or file) could forward that signed message to a third
 * member as a "group key" of the other's making.
 */
const WRAP_NOTATION: RawNotation = Object.freeze({
  name: 'group-key@fastchat.dev',
  value: new TextEncoder().encode('v1'),
  humanReadable: true,
  critical: false,
})

interface WrappedPayload {
  fastchat: 'group-key'
  v: 1
  group: string
  epoch: number
  key: string
}

/** A fresh random key for `epoch` of `group`. */
export function generateGroupKey(group: string, epoch: number): GroupKey {
  assertGroupAndEpoch(group, epoch)
  return createGroupKey(group, epoch, webcrypto.getRandomValues(new Uint8Array(KEY_BYTES)))
}

/**
 * Wraps the key for every member: the payload
 * `{fastchat: 'group-key', v: 1, group, epoch, key: <base64>}` is signed once
 * by `signer`, then that signed message is encrypted separately to each
 * member's armored public key (1 signature + N encryptions). Returns an
 * armored PGP MESSAGE per member, with the same keys in the same order.
 * FC_BAD_KEY, naming the member, if a member's key is unreadable or cannot
 * encrypt; FC_BAD_KEY for no members at all.
 */
export async function wrapGroupKey(opts: {key: GroupKey; members: Record<string, string>; signer: UnlockedKey}): Promise<Record<string, string>> {
  const bytes = bytesOf(opts.key)
  const signingKey = privateKeyOf(opts.signer)
  const entries = Object.entries(opts.members)
  if (entries.length === 0) throw new CryptoError('FC_BAD_KEY', 'A group key needs at least one member to wrap it for.')
  await assertCanSign(signingKey)
  const memberKeys = await Promise.all(entries.map(([username, armored]) => memberKey(username, armored)))

  const payload: WrappedPayload = {fastchat: 'group-key', v: 1, group: opts.key.group, epoch: opts.key.epoch, key: Buffer.from(bytes).toString('base64')}
  const signed = await sign({
    message: await createMessage({binary: new TextEncoder().encode(JSON.stringify(payload))}),
    signingKeys: signingKey,
    signatureNotations: [WRAP_NOTATION],
    format: 'object',
    config: OPENPGP_CONFIG,
  })
  // One signed Message object, encrypted once per member. Not serialized and
  // read back per member: readMessage() stops at the literal data packet and
  // leaves the trailing signature in an unread stream that encrypt() does not
  // write out, so every copy would lose its signature. encrypt() only reads
  // the message's packets (write(); compression is off), so sharing is safe.
  const wrapped = await Promise.all(
    memberKeys.map((encryptionKey) => encrypt({message: signed, encryptionKeys: encryptionKey, format: 'armored', config: OPENPGP_CONFIG})),
  )
  // fromEntries, not obj[name] = ...: a member called "__proto__" must stay a member.
  return Object.fromEntries(entries.map(([username], index) => [username, wrapped[index]!]))
}

/**
 * Opens one wrapped key with the member's own `key`, checks its signature
 * against `signerPublicKey` (the pinned key of the member the server says
 * made it) and that it is the key of `group` and `epoch`.
 * FC_BAD_MESSAGE if `armored` is not an encrypted OpenPGP message;
 * FC_DECRYPT_FAILED if it is not addressed to `key` or is damaged;
 * FC_BAD_GROUP_KEY if it is not signed, or not validly by that key, or is not
 * a FastChat group key for that group and epoch. A key that is not provably
 * from that member is never returned.
 */
export async function unwrapGroupKey(opts: {armored: string; key: UnlockedKey; signerPublicKey: string; group: string; epoch: number}): Promise<GroupKey> {
  assertGroupAndEpoch(opts.group, opts.epoch)
  const privateKey = privateKeyOf(opts.key)
  const signer = await parsePublicKey(opts.signerPublicKey)
  const message = await read(() => readMessage({armoredMessage: opts.armored, config: OPENPGP_CONFIG}))
  assertAddressedTo(message, privateKey)
  const result = await decryptOrThrow(() =>
    decrypt({message, decryptionKeys: privateKey, verificationKeys: signer, expectSigned: false, format: 'binary', config: OPENPGP_CONFIG}),
  )
  const verification = await verificationOf(result.signatures, signer)
  if (verification.status !== 'valid') {
    const reason = verification.status === 'unsigned' ? 'it is not signed' : verification.reason
    throw new CryptoError('FC_BAD_GROUP_KEY', `This group key is not provably from its maker: ${reason}`)
  }
  // verificationOf checked that every signature is good and by `signer`.
  const signatures = await Promise.all(result.signatures.map((signature) => signature.signature))
  const marked = signatures.every((signature) =>
    signature.packets.some((packet) => packet.rawNotations.some((notation) => notation.name === WRAP_NOTATION.name)),
  )
  if (!marked) throw new CryptoError('FC_BAD_GROUP_KEY', 'This message is signed, but not as a FastChat group key.')

  const payload = parsePayload(result.data)
  if (payload.group !== opts.group || payload.epoch !== opts.epoch) {
    throw new CryptoError(
      'FC_BAD_GROUP_KEY',
      `This is the key of ${describeEpoch(payload.group, payload.epoch)}, not of ${describeEpoch(opts.group, opts.epoch)}.`,
    )
  }
  return createGroupKey(payload.group, payload.epoch, Buffer.from(payload.key, 'base64'))
}

/** Encrypts and signs text once under the group key; returns an armored PGP MESSAGE with no per-recipient packets. */
export async function encryptGroupText(opts: {text: string; key: GroupKey; signer: UnlockedKey}): Promise<string> {
  const {sessionKey, signingKey} = await prepareGroupEncryption(opts.key, opts.signer)
  const message = await createMessage({text: opts.text})
  return encrypt({message, sessionKey, signingKeys: signingKey, format: 'armored', config: OPENPGP_CONFIG})
}

/** encryptGroupText for bytes (files, images); returns a binary OpenPGP message. */
export async function encryptGroupBytes(opts: {data: Uint8Array; key: GroupKey; signer: UnlockedKey}): Promise<Uint8Array> {
  const {sessionKey, signingKey} = await prepareGroupEncryption(opts.key, opts.signer)
  const message = await createMessage({binary: opts.data})
  return encrypt({message, sessionKey, signingKeys: signingKey, format: 'binary', config: OPENPGP_CONFIG})
}

/**
 * Decrypts a group message with the group key and checks its signature
 * against the sender's pinned key, as decryptText does: FC_BAD_MESSAGE if it
 * is not an encrypted OpenPGP message, FC_DECRYPT_FAILED for the wrong key
 * (another epoch's) or a modified ciphertext, and a bad or foreign signature
 * comes back as `{status: 'invalid'}`. Any PKESK/SKESK packets are ignored.
 */
export async function decryptGroupText(opts: {armored: string; key: GroupKey; senderPublicKey: string}): Promise<{text: string; verification: Verification}> {
  const {sessionKeys, sender} = await prepareGroupDecryption(opts.key, opts.senderPublicKey)
  const message = await read(() => readMessage({armoredMessage: opts.armored, config: OPENPGP_CONFIG}))
  const result = await decryptOrThrow(() =>
    decrypt({message, sessionKeys, verificationKeys: sender, expectSigned: false, format: 'utf8', config: OPENPGP_CONFIG}),
  )
  return {text: result.data, verification: await verificationOf(result.signatures, sender)}
}

/** decryptGroupText for binary messages made by encryptGroupBytes. */
export async function decryptGroupBytes(opts: {data: Uint8Array; key: GroupKey; senderPublicKey: string}): Promise<{data: Uint8Array; verification: Verification}> {
  const {sessionKeys, sender} = await prepareGroupDecryption(opts.key, opts.senderPublicKey)
  const message = await read(() => readMessage({binaryMessage: opts.data, config: OPENPGP_CONFIG}))
  const result = await decryptOrThrow(() =>
    decrypt({message, sessionKeys, verificationKeys: sender, expectSigned: false, format: 'binary', config: OPENPGP_CONFIG}),
  )
  return {data: result.data, verification: await verificationOf(result.signatures, sender)}
}

function createGroupKey(group: string, epoch: number, bytes: Uint8Array): GroupKey {
  const hex = createHash('sha256').update(bytes).digest('hex').slice(0, 16)
  const handle: GroupKey = Object.freeze({group, epoch, id: hex.match(/.{4}/g)!.join(' ')})
  keyBytes.set(handle, Uint8Array.from(bytes))
  return handle
}

function bytesOf(handle: GroupKey): Uint8Array {
  const bytes = keyBytes.get(handle)
  if (!bytes) throw new CryptoError('FC_BAD_GROUP_KEY', 'Not a group key: use generateGroupKey() or unwrapGroupKey() to get one.')
  return bytes
}

/** A copy each time: openpgp keeps no reference we know of, but the key must not be changed through one. */
function sessionKeyOf(handle: GroupKey): SessionKey {
  return {data: Uint8Array.from(bytesOf(handle)), algorithm: SESSION_ALGORITHM}
}

async function prepareGroupEncryption(key: GroupKey, signer: UnlockedKey): Promise<{sessionKey: SessionKey; signingKey: ReturnType<typeof privateKeyOf>}> {
  const sessionKey = sessionKeyOf(key)
  const signingKey = privateKeyOf(signer)
  await assertCanSign(signingKey)
  return {sessionKey, signingKey}
}

async function prepareGroupDecryption(key: GroupKey, senderPublicKey: string): Promise<{sessionKeys: SessionKey; sender: PublicKey}> {
  return {sessionKeys: sessionKeyOf(key), sender: await parsePublicKey(senderPublicKey)}
}

async function memberKey(username: string, armored: string): Promise<PublicKey> {
  try {
    const key = await parsePublicKey(armored)
    await assertCanEncryptTo(key)
    return key
  } catch (error) {
    if (!(error instanceof CryptoError)) throw error
    throw new CryptoError(error.code, `Member ${JSON.stringify(username)}: ${error.message}`, {cause: error})
  }
}

function assertGroupAndEpoch(group: string, epoch: number): void {
  if (typeof group !== 'string' || group === '') throw new CryptoError('FC_BAD_GROUP_KEY', 'A group key needs a group id.')
  if (!Number.isSafeInteger(epoch) || epoch < 0) throw new CryptoError('FC_BAD_GROUP_KEY', `Not an epoch number: ${String(epoch)}.`)
}

/** The decrypted, verified payload: exactly the shape wrapGroupKey writes, else FC_BAD_GROUP_KEY. */
function parsePayload(data: Uint8Array): WrappedPayload {
  let value: unknown
  try {
    value = JSON.parse(new TextDecoder('utf-8', {fatal: true}).decode(data))
  } catch (error) {
    throw new CryptoError('FC_BAD_GROUP_KEY', 'This message is not a FastChat group key.', {cause: error})
  }
  const payload = value as Partial<Record<keyof WrappedPayload, unknown>> | null
  if (
    typeof payload !== 'object' ||
    payload === null ||
    Array.isArray(payload) ||
    payload.fastchat !== 'group-key' ||
    payload.v !== 1 ||
    typeof payload.group !== 'string' ||
    typeof payload.epoch !== 'number' ||
    typeof payload.key !== 'string' ||
    !isCanonicalBase64Key(payload.key)
  ) {
    throw new CryptoError('FC_BAD_GROUP_KEY', 'This message is not a FastChat group key (v1).')
  }
  return payload as WrappedPayload
}

/** Buffer's base64 decoder skips what it does not understand; insist on exactly 32 bytes, written the one canonical way. */
function isCanonicalBase64Key(text: string): boolean {
  const bytes = Buffer.from(text, 'base64')
  return bytes.length === KEY_BYTES && bytes.toString('base64') === text
}

function describeEpoch(group: string, epoch: number): string {
  return `group ${JSON.stringify(group)} epoch ${epoch}`
}
