import {readFile, stat} from 'node:fs/promises'
import {basename} from 'node:path'

import {encryptBytes, encryptText} from '../crypto/index.js'
import {ApiError, NetworkError} from './api-client.js'
import {formatSize} from './downloads.js'
import {FastChatError} from './errors.js'
import {mediaTypeFor, packEnvelope} from './file-envelope.js'
import {newBinding, packText} from './message-content.js'
import {noProgress, type ProgressFactory} from './progress.js'
import type {ChatSession} from './session.js'
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
  blob: string
  name: string
  type: string
  /** Bytes of the file (before encryption). */
  size: number
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
  options: {file: {name: string; type: string; data: Uint8Array}; recipient: KeyForSending; caption?: string; progress?: ProgressFactory},
): Promise<SentFile> {
  const {file, recipient} = options
  const key = await session.key()
  const to = [recipient.publicKey, key.publicKey]
  // The file and its caption are bound to one conversation and one id, which is also the send's idempotency key.
  const binding = newBinding({user: recipient.username})
  const sealed = await encryptBytes({data: packEnvelope(file, file.data, binding), to, signer: key})
  const caption = options.caption ? await encryptText({text: packText(binding, options.caption), to, signer: key}) : ''

  const uploaded = await uploadSealed(session, sealed, file, options.progress)

  const sent = await session.withFailover((api) =>
    api.send({to: {user: recipient.username}, kind: 'image', blob: uploaded.blob, ciphertext: caption}, binding.id),
  )
  return {id: sent.id, sentAt: sent.sentAt, to: recipient.username, blob: uploaded.blob, name: file.name, type: file.type, size: file.data.byteLength}
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
