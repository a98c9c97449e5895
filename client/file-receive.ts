import {stat} from 'node:fs/promises'
import {dirname, resolve} from 'node:path'

import {CryptoError, type Verification} from '../crypto/index.js'
import {ApiError, type HistoryMessage, isFailoverError} from './api-client.js'
import {saveUnique} from './downloads.js'
import {EnvelopeError, unpackEnvelope} from './file-envelope.js'
import {MAX_FILE_BYTES} from './file-send.js'
import {type Arrival, type Binding, unpackText} from './message-content.js'
import {type Decryptor, judge, judgeBinding, type OpenedBase, type SenderKey} from './opened.js'
import {noProgress, type Progress, type ProgressFactory} from './progress.js'
import type {ChatSession} from './session.js'

/** An image (or any file) message: where it was saved, and what the sender said it is. */
export interface OpenedFile extends OpenedBase {
  kind: 'image'
  /** Always null: a file's words are in `caption`. */
  text: null
  /** The server's id for the encrypted file. */
  blob: string
  /** The caption, decrypted; null when there is none (or it could not be decrypted). */
  caption: string | null
  /** Where the file was saved; null when it was not (not downloaded, or undecryptable). */
  path: string | null
  /** The sender's name for the file (the saved one may differ: sanitized, numbered). */
  name: string | null
  /** Media type, as the sender's client guessed it. */
  type: string | null
  /** Bytes of the file as saved. */
  size: number | null
  /**
   * Why `inbox`/`listen` listed the file but did not save it: from a sender you never wrote to, larger than you let in
   * unasked, or sent only directly (peer to peer) to another of your devices: the server never had it.
   */
  held?: 'unknown-sender' | 'too-large' | 'direct-only'
}

export interface ReceiveFilesOptions {
  /** The directory to save in, created on first use (so that an inbox without files creates nothing). */
  dir: () => Promise<string>
  progress?: ProgressFactory
  /**
   * Without it every file is downloaded (--download). With it only files from
   * contacts you chose (wrote to, verified, trusted) and of at most `maxBytes`
   * encrypted are; the others are listed, to be fetched with --download.
   */
  automatic?: {maxBytes: number}
}

/** The encrypted blob is the file plus the envelope header and OpenPGP's overhead. */
export const MAX_BLOB_BYTES = MAX_FILE_BYTES + 1024 * 1024
/** Results kept for a page retried after a failover, so that a file is not saved twice. */
const REMEMBERED = 1_000

/**
 * Downloads, decrypts, verifies and saves the file of an image message.
 * A message that cannot be downloaded (gone, refused), decrypted or parsed is
 * reported on its own (`verification.status: 'undecryptable'`) and the batch
 * goes on. A network failure or an unavailable server is thrown instead, like
 * a failed key lookup: the caller keeps its cursor and tries again (on
 * another server); files already saved in that batch are not saved again.
 * A file from a sender whose signature does not verify is still saved, and
 * shown as NOT VERIFIED, as a text message would be.
 */
export class FileReceiver {
  private readonly opened = new Map<string, OpenedFile>()

  /** Without options, files are listed (with their captions) but not downloaded: `history` without --download. */
  constructor(
    private readonly session: ChatSession,
    private readonly options?: ReceiveFilesOptions,
  ) {}

  /** `decrypt` opens the file and its caption; `sender` is who the trust rules judge them by. */
  async open(
    message: HistoryMessage,
    base: Omit<OpenedBase, 'verification'>,
    decrypt: Decryptor,
    sender: SenderKey,
    arrival: Arrival,
    /**
     * The encrypted file, when it came directly (./peer.ts), and what decides whether it is new (its caption's signed
     * id not shown before): saved as a downloaded one would be, or AlreadyShown thrown before anything is written.
     */
    direct?: {sealed: Uint8Array; claim: (signedId: string) => Promise<boolean>},
  ): Promise<OpenedFile> {
    const known = this.opened.get(message.id)
    if (known) return known
    const empty = unopenedFile(message, base)
    const caption = await this.openCaption(message, decrypt, sender, arrival)
    const listed = {...empty, caption: caption.text, ...(caption.signedId ? {signedId: caption.signedId} : {})}
    if (direct) {
      if (!caption.signedId || caption.verification?.status !== 'valid' || !(await direct.claim(caption.signedId))) throw new AlreadyShown()
      // Remembered under the id its sender signed: the server's message for it (history) finds it by that.
      return this.save(message, listed, decrypt, sender, arrival, caption, direct.sealed, caption.signedId)
    }
    if (!message.blob) {
      // Sent directly: saved here if it came to this device, else it went to another of mine and the server never had it.
      const here = caption.signedId ? await this.session.store.savedFile(caption.signedId) : undefined
      if (here && (await stillThere(here.path, here.size))) {
        const {verification, signedId, ...where} = here
        return this.remember({...listed, ...where, ...(signedId ? {signedId} : {}), verification})
      }
      if (caption.signedId) return {...listed, verification: caption.verification ?? {status: 'not-downloaded'}, held: 'direct-only'}
      return {...empty, verification: {status: 'undecryptable', reason: 'the message references no file'}}
    }
    // Saved before (by inbox, listen or history --download) and still there: shown with its name and path, not fetched
    // or saved again, unless this read saves files somewhere else (--out DIR): then a copy goes there, as asked.
    const saved = await this.session.store.savedFile(message.id)
    if (saved && (await stillThere(saved.path, saved.size)) && (!this.options || dirname(saved.path) === resolve(await this.options.dir()))) {
      const {verification, signedId, ...where} = saved
      return this.remember({...listed, ...where, ...(signedId ? {signedId} : {}), verification})
    }
    if (!this.options) return {...listed, verification: caption.verification ?? {status: 'not-downloaded'}}
    const {automatic} = this.options
    // Unasked, only files from contacts you chose: a stranger's file is not written to your disk.
    if (automatic && !sender?.known) return {...listed, verification: caption.verification ?? {status: 'not-downloaded'}, held: 'unknown-sender'}

    let sealed: Uint8Array
    try {
      sealed = await this.download(message.blob, message.from, automatic?.maxBytes ?? MAX_BLOB_BYTES)
    } catch (error) {
      if (automatic && error instanceof ApiError && error.code === 'FC_FILE_TOO_LARGE') {
        return this.remember({...listed, verification: caption.verification ?? {status: 'not-downloaded'}, held: 'too-large'})
      }
      // Unavailable, logged out, rate limited: not this file's fault; the caller keeps its cursor and retries.
      if (isFailoverError(error) || !(error instanceof ApiError) || error.status === 401 || error.status === 429) throw error
      return this.remember({...listed, verification: {status: 'undecryptable', reason: `cannot download it: ${error.message}`}})
    }
    return this.save(message, listed, decrypt, sender, arrival, caption, sealed, message.id)
  }

  /** Decrypts, checks and saves an encrypted file, downloaded or come directly. */
  private async save(
    message: HistoryMessage,
    listed: Omit<OpenedFile, 'verification'>,
    decrypt: Decryptor,
    sender: SenderKey,
    arrival: Arrival,
    caption: {verification?: Verification; signedId?: string},
    sealed: Uint8Array,
    /** What the saved file is remembered under (Store.rememberSavedFile): the server's message id, or the signed one. */
    savedAs: string,
  ): Promise<OpenedFile> {
    if (!this.options) return {...listed, verification: caption.verification ?? {status: 'not-downloaded'}}
    let file: {verification: Verification; name: string; type: string; data: Uint8Array; binding: Binding | null}
    try {
      const decrypted = await decrypt.bytes(sealed)
      const {header, data} = unpackEnvelope(decrypted.data)
      file = {verification: decrypted.verification, name: header.name, type: header.type, data, binding: header.binding}
    } catch (error) {
      if (!(error instanceof CryptoError || error instanceof EnvelopeError)) throw error
      return this.remember({...listed, verification: {status: 'undecryptable', reason: error.message}})
    }
    const path = await saveUnique(await this.options.dir(), file.name, file.data)
    // The file and its caption must both verify, and belong together, for the message to be verified.
    let verification: Verification = judgeBinding(judge(file.verification, message.from, sender), file.binding, arrival)
    if (verification.status === 'valid' && caption.verification && caption.verification.status !== 'valid') verification = caption.verification
    if (verification.status === 'valid' && caption.signedId && caption.signedId !== file.binding?.id) {
      verification = {status: 'invalid', reason: 'the caption was signed for another file'}
    }
    const signedId = file.binding?.id ?? caption.signedId
    const opened = {path, name: file.name, type: file.type, size: file.data.byteLength, verification, ...(signedId ? {signedId} : {})}
    await this.session.store.rememberSavedFile(savedAs, opened)
    return this.remember({...listed, ...opened})
  }

  /** The caption, if any: decrypted and judged like a text message; one that cannot be decrypted makes the message unverified. */
  private async openCaption(
    message: HistoryMessage,
    decrypt: Decryptor,
    sender: SenderKey,
    arrival: Arrival,
  ): Promise<{text: string | null; verification?: Verification; signedId?: string}> {
    if (!message.ciphertext) return {text: null}
    try {
      const opened = await decrypt.text(message.ciphertext)
      const content = unpackText(opened.text)
      const verification = judgeBinding(judge(opened.verification, message.from, sender), content?.binding ?? null, arrival)
      return {
        // A file sent directly always has a caption, empty when none was written: that is no caption.
        text: content ? (content.text === '' ? null : content.text) : opened.text,
        verification: verification.status === 'valid' ? verification : {status: 'invalid', reason: `caption: ${reasonOf(verification)}`},
        ...(content ? {signedId: content.binding.id} : {}),
      }
    } catch (error) {
      if (!(error instanceof CryptoError)) throw error
      return {text: null, verification: {status: 'invalid', reason: `the caption cannot be decrypted: ${error.message}`}}
    }
  }

  private async download(blob: string, from: string, maxBytes: number): Promise<Uint8Array> {
    const progress = this.options?.progress ?? noProgress
    let bar: Progress | undefined
    try {
      return await this.session.api.downloadBlob(blob, maxBytes, {
        start: (total) => (bar = progress(`Downloading from ${from}`, total)),
        bytes: (count) => bar?.advance(count),
      })
    } finally {
      bar?.stop()
    }
  }

  private remember(file: OpenedFile): OpenedFile {
    this.opened.set(file.id, file)
    if (this.opened.size > REMEMBERED) this.opened.delete(this.opened.keys().next().value!)
    return file
  }
}

/** A file that came directly, not saved: shown already (its server copy came first), or with a caption that does not verify. */
export class AlreadyShown extends Error {
  constructor() {
    super('shown already, or not verified')
  }
}

/** Whether the file saved at `path` is still there, as saved (moved, deleted or changed: no). */
async function stillThere(path: string, size: number): Promise<boolean> {
  const info = await stat(path).catch(() => undefined)
  return info !== undefined && info.isFile() && info.size === size
}

/** An image message with nothing opened yet; with `reason`, one that cannot be opened at all (no key for its group epoch). */
export function unopenedFile(message: HistoryMessage, base: Omit<OpenedBase, 'verification'>): Omit<OpenedFile, 'verification'>
export function unopenedFile(message: HistoryMessage, base: Omit<OpenedBase, 'verification'>, reason: string): OpenedFile
export function unopenedFile(message: HistoryMessage, base: Omit<OpenedBase, 'verification'>, reason?: string): Omit<OpenedFile, 'verification'> | OpenedFile {
  const empty = {...base, kind: 'image' as const, text: null, blob: message.blob ?? '', caption: null, path: null, name: null, type: null, size: null}
  return reason === undefined ? empty : {...empty, verification: {status: 'undecryptable', reason}}
}

const reasonOf = (verification: Verification) => (verification.status === 'invalid' ? verification.reason : verification.status === 'unsigned' ? 'not signed' : 'verified')

