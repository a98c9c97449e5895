import {readFile, stat} from 'node:fs/promises'
import {basename} from 'node:path'

import {encryptBytes, encryptText} from '../crypto/index.js'
import {ApiError, NetworkError} from './api-client.js'
import {formatSize} from './downloads.js'
import {FastChatError} from './errors.js'
import {mediaTypeFor, packEnvelope} from './file-envelope.js'
import {newBinding, packText} from './message-content.js'
import {type DirectResult, postDirectFile} from './peer.js'
import {noProgress, type ProgressFactory} from './progress.js'
import type {ChatSession} from './session.js'
import type {PeerOffer} from './store.js'
import type {KeyForSending} from './trust.js'

/**
 * Largest file the CLI sends or accepts. Files are encrypted and decrypted in
 * memory (crypto/ works on byte arrays), so this bounds the memory a transfer
 * takes; the server has its own, usually lower, limit (25 MiB by default).
 */
export const MAX_FILE_BYTES = 512 * 1024 * 1024

export interface SentFile {
  id: string
  sentAt: string
  to: string
  /** The server's copy of the encrypted file; null when it went only directly (./peer.ts). */
  blob: string | null
  name: string
  type: string
  /** Bytes of the file (before encryption). */
  size: number
  /** The paths that carried the file: `direct` (the recipient's peer endpoint), `server` (uploaded). */
  via: ('direct' | 'server')[]
  /** Why it did not go directly, when the recipient had an offer. */
  direct?: Exclude<DirectResult, 'direct'>
  /** The id its sender signed, the same on every path (also the send's idempotency key). */
  signedId: string
}

/** Reads the file to send, with input errors (missing, a directory, too big) as one clear line. */
export async function readFileToSend(path: string): Promise<{name: string; type: string; data: Uint8Array}> {
  let size: number
  try {
    const info = await stat(path)
    if (!info.isFile()) throw new FastChatError('FC_FILE_UNREADABLE', `${path} is not a file.`, {path})
    size = info.size
  } catch (error) {
    if (error instanceof FastChatError) throw error
    throw new FastChatError('FC_FILE_UNREADABLE', `Cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}.`, {path}, {cause: error})
  }
  if (size > MAX_FILE_BYTES) throw new FastChatError('FC_FILE_TOO_LARGE', `${path} is too large (${formatSize(size)}; at most ${formatSize(MAX_FILE_BYTES)}).`, {path, size, limit: MAX_FILE_BYTES})
  const name = basename(path)
  return {name, type: mediaTypeFor(name), data: await readFile(path)}
}

/**
 * Sends a file (DESIGN.md section 4): name, type and bytes in one envelope,
 * encrypted to the recipient and to us and signed; uploaded as a blob; then
 * an image message that references it, with the caption (if any) encrypted
 * the same way as a text message. Both requests fail over to another server.
 * A retried upload simply uploads again (the server collects blobs nobody
 * references); the message keeps one idempotency key across its tries.
 */
export async function sendFile(
  session: ChatSession,
  options: {
    file: {name: string; type: string; data: Uint8Array}
    recipient: KeyForSending
    caption?: string
    progress?: ProgressFactory
    /** The recipient's peer offer, when it has a usable one: the file is streamed to it first. */
    offer?: PeerOffer
  },
): Promise<SentFile> {
  const {file, recipient, offer} = options
  const progress = options.progress ?? noProgress
  const key = await session.key()
  const to = [recipient.publicKey, key.publicKey]
  // The file and its caption are bound to one conversation and one id, which is also the send's idempotency key.
  const binding = newBinding({user: recipient.username})
  const sealed = await encryptBytes({data: packEnvelope(file, file.data, binding), to, signer: key})
  // Sent directly, the file always has a caption (empty if none was given): it names the file's id, by which the
  // receiver knows the server's message for the copy it has, without anything to download.
  const caption = options.caption || offer ? await encryptText({text: packText(binding, options.caption ?? ''), to, signer: key}) : ''

  let direct: DirectResult | undefined
  if (offer) {
    const bar = progress(`Sending ${file.name} directly`, sealed.byteLength)
    try {
      direct = await postDirectFile(offer, {from: session.username, to: {user: recipient.username}, caption}, sealed, (count) => bar.advance(count))
    } finally {
      bar.stop()
    }
  }
  // Stored on the server too unless the only device of the recipient has it: nothing is lost, and their other devices get it.
  let blob: string | null = null
  if (direct !== 'direct' || (offer?.devices ?? 1) > 1) {
    try {
      blob = (await uploadSealed(session, sealed, file, progress)).blob
    } catch (error) {
      if (direct === 'direct') blob = null // delivered; the other devices see it listed, not stored
      else throw peerOnlyHint(error, recipient.username, direct) ?? error
    }
  }
  const sent = await session.withFailover((api) =>
    api.send({to: {user: recipient.username}, kind: 'image', ...(blob ? {blob} : {}), ciphertext: caption}, binding.id),
  )
  return {
    id: sent.id,
    sentAt: sent.sentAt,
    to: recipient.username,
    blob,
    name: file.name,
    type: file.type,
    size: file.data.byteLength,
    via: direct === 'direct' ? (blob ? ['direct', 'server'] : ['direct']) : ['server'],
    ...(direct && direct !== 'direct' ? {direct} : {}),
    signedId: binding.id,
  }
}

/** A file too large for the server: say whether, and how, it could have gone directly. */
function peerOnlyHint(error: unknown, recipient: string, direct: DirectResult | undefined): FastChatError | undefined {
  if (!(error instanceof FastChatError) || !['FC_PAYLOAD_TOO_LARGE', 'FC_UPLOAD_CUT_OFF'].includes(error.code)) return undefined
  const why =
    direct === undefined
      ? `${recipient} has no peer endpoint open to you (a file this large can go only directly, while ${recipient} runs \`fastchat listen --peer\`)`
      : direct === 'too-large'
        ? `${recipient}'s client takes no file this large directly (their --max-download)`
        : `${recipient} could not be reached directly (${direct})`
  return new FastChatError(error.code, `${error.message} It did not go directly either: ${why}.`, {...error.data, direct: direct ?? null})
}

/** Uploads an encrypted file as a blob, failing over like a send; a refusal for its size is one clear line. */
export async function uploadSealed(
  session: ChatSession,
  sealed: Uint8Array,
  file: {name: string; data: Uint8Array},
  progress: ProgressFactory = noProgress,
): Promise<{blob: string; size: number}> {
  return session
    .withFailover(async (api) => {
      const bar = progress(`Uploading ${file.name}`, sealed.byteLength)
      try {
        return await api.uploadBlob(sealed, {bytes: (count) => bar.advance(count)})
      } finally {
        bar.stop()
      }
    })
    .catch((error: unknown) => {
      throw tooLarge(error, file.data.byteLength) ?? cutOff(error, file.data.byteLength) ?? error
    })
}

/**
 * A server that refuses an upload by its Content-Length answers 413 and may
 * close the connection while the body is still being sent; the client then
 * sees the write fail (EPIPE, ECONNRESET) before it can read the answer. Say
 * what that most likely means instead of "cannot reach the server".
 */
function cutOff(error: unknown, size: number): FastChatError | undefined {
  if (!(error instanceof NetworkError) || !['EPIPE', 'ECONNRESET', 'UND_ERR_SOCKET'].includes(error.reason)) return undefined
  return new FastChatError(
    'FC_UPLOAD_CUT_OFF',
    `The server closed the connection while receiving the file (${formatSize(size)}): it may be too large for the server (the default limit is 25 MiB), or the server went away.`,
    {size},
  )
}

/** The server's 413 as a sentence that names its limit. */
function tooLarge(error: unknown, size: number): FastChatError | undefined {
  if (!(error instanceof ApiError) || error.status !== 413) return undefined
  const limit = typeof error.problem.limit === 'number' ? ` (the server takes at most ${formatSize(error.problem.limit)} once encrypted)` : ''
  return new FastChatError('FC_PAYLOAD_TOO_LARGE', `The file is too large for the server: ${formatSize(size)}${limit}.`, {size})
}
