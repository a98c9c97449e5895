import {CryptoError, decryptText} from '../../crypto/index.js'
import type {HistoryMessage} from './api-client.js'
import {printable} from './display.js'
import {FileReceiver, formatFile, type OpenedFile, type ReceiveFilesOptions} from './file-receive.js'
import {judge, type OpenedBase, type SenderKey, verificationMark} from './opened.js'
import type {ChatSession} from './session.js'
import {KeyDirectory} from './trust.js'

export {printable} from './display.js'
export {judge, type MessageVerification, type OpenedBase, verificationMark} from './opened.js'
export type {OpenedFile} from './file-receive.js'

/** A text message (or one of a kind this version cannot show). */
export interface OpenedText extends OpenedBase {
  kind: string
  /** Null when it could not be decrypted (or is of a kind this version cannot show). */
  text: string | null
}

/** What a received (or sent, in history) message turned into, for printing and for --json. */
export type OpenedMessage = OpenedText | OpenedFile

export const isFile = (message: OpenedMessage): message is OpenedFile => message.kind === 'image' && 'blob' in message

/**
 * Decrypts and verifies messages. Never throws for a bad message (damaged,
 * forged, not for us): that becomes its `verification`. It does throw when
 * the network fails while looking up a sender's key, so that the caller
 * leaves its cursor where it was and tries again later.
 */
export class MessageOpener {
  private readonly files: FileReceiver

  /** `files`: where and how image messages are downloaded; without it they are listed but not downloaded. */
  constructor(
    private readonly session: ChatSession,
    files?: ReceiveFilesOptions,
    private readonly keys = new KeyDirectory(session),
  ) {
    this.files = new FileReceiver(session, files)
  }

  async open(message: HistoryMessage): Promise<OpenedMessage> {
    const base = {id: message.id, from: message.from, to: message.to.user ?? `group:${message.to.group}`, sentAt: message.sentAt, keyChanged: false}
    if (message.kind !== 'text' && message.kind !== 'image') {
      return {...base, kind: message.kind, text: null, verification: {status: 'undecryptable', reason: `${message.kind} messages are not supported by this version`}}
    }
    // The passphrase is asked for at the first message, not before: an empty inbox needs no key.
    const key = await this.session.key()
    // Our own messages (history) were encrypted to us too and are checked against our own key.
    const sender: SenderKey = this.session.isMe(message.from) ? {publicKey: key.publicKey, keyChanged: false} : await this.keys.forVerifying(message.from)
    const keyChanged = Boolean(sender?.keyChanged)
    if (message.kind === 'image') return this.files.open(message, {...base, keyChanged}, key, sender)
    try {
      // With no key at all for the sender, still decrypt (against our own key, which cannot match) but never claim it verified.
      const opened = await decryptText({armored: message.ciphertext, key, senderPublicKey: sender?.publicKey ?? key.publicKey})
      return {...base, kind: 'text', text: opened.text, verification: judge(opened.verification, message.from, sender), keyChanged}
    } catch (error) {
      if (!(error instanceof CryptoError)) throw error
      return {...base, kind: 'text', text: null, verification: {status: 'undecryptable', reason: error.message}, keyChanged}
    }
  }
}

/** The human form: `[sentAt] from: text  ✔ verified`, with a warning line before it when the key changed. */
export function formatMessage(message: OpenedMessage): string[] {
  const lines: string[] = []
  if (message.keyChanged) lines.push(`WARNING: ${message.from}'s key has changed; this message is NOT verified`)
  if (isFile(message)) return [...lines, ...formatFile(message)]
  const head = `[${message.sentAt}] ${message.from}:`
  const {verification} = message
  if (verification.status === 'undecryptable' || message.text === null) {
    const reason = 'reason' in verification ? ` (${verification.reason})` : ''
    lines.push(`${head} ✘ could not decrypt message ${message.id}${reason}`)
    return lines
  }
  lines.push(`${head} ${printable(message.text)}  ${verificationMark(verification)}`)
  return lines
}
