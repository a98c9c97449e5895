import {CryptoError, decryptBytes, decryptGroupBytes, decryptGroupText, decryptText, type UnlockedKey} from '../crypto/index.js'
import type {HistoryMessage} from './api-client.js'
import {Directory} from './directory.js'
import {FileReceiver, type OpenedFile, type ReceiveFilesOptions, unopenedFile} from './file-receive.js'
import {GroupKeyUnavailable} from './group-keys.js'
import {type Decryptor, judge, judgeBinding, type OpenedBase, type SenderKey} from './opened.js'
import {type Arrival, unpackText} from './message-content.js'
import type {ChatSession} from './session.js'
import {LookupMismatchError} from './trust.js'

export {judge, type MessageVerification, type OpenedBase} from './opened.js'

/** An image message's encrypted file that came directly, and how to claim its signed id (FileReceiver.open). */
export type DirectFile = {sealed: Uint8Array; claim: (signedId: string) => Promise<boolean>}
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
    private readonly directory = new Directory(session),
  ) {
    this.files = new FileReceiver(session, files)
  }

  /** `direct`: the encrypted file of an image message that came directly (./peer.ts), instead of downloading it (FileReceiver.open). */
  async open(message: HistoryMessage, direct?: DirectFile): Promise<OpenedMessage> {
    const groupId = message.to.group
    const group = groupId ? {id: groupId, name: await this.directory.groups.nameOf(groupId), epoch: message.epoch ?? 0} : undefined
    const base = {
      id: message.id,
      from: message.from,
      to: message.to.user ?? `group:${groupId}`,
      ...(group ? {group} : {}),
      sentAt: message.sentAt,
      keyChanged: false,
      // My own message: in history, or a sent copy from another of my devices in my stream.
      ...(this.session.isMe(message.from) ? {sent: true as const} : {}),
    }
    if (message.kind !== 'text' && message.kind !== 'image') {
      return {...base, kind: message.kind, text: null, verification: {status: 'undecryptable', reason: `${message.kind} messages are not supported by this version`}}
    }
    // The passphrase is asked for at the first message, not before: an empty inbox needs no key.
    const key = await this.session.key()
    // Our own messages (history) were encrypted to us too and are checked against our own key.
    let sender: SenderKey
    try {
      sender = this.session.isMe(message.from) ? {publicKey: key.publicKey, keyChanged: false, known: true} : await this.directory.keys.forVerifying(message.from)
    } catch (error) {
      // The server tried to pass another name's key off as the sender's: opened as from a sender without a key
      // (never verified, files not saved unasked), with the refusal as the reason; the other messages go on.
      if (!(error instanceof LookupMismatchError)) throw error
      const opened = await this.openFrom(message, base, key, null, direct)
      return opened.verification.status === 'undecryptable' ? opened : {...opened, verification: {status: 'invalid', reason: error.message}}
    }
    return this.openFrom(message, base, key, sender, direct)
  }

  /** Decrypts and judges `message` with `sender` as the key its signature must be by. */
  private async openFrom(message: HistoryMessage, base: Omit<OpenedBase, 'verification'>, key: UnlockedKey, sender: SenderKey, direct?: DirectFile): Promise<OpenedMessage> {
    const opened = {...base, keyChanged: Boolean(sender?.keyChanged)}
    let decrypt: Decryptor
    try {
      decrypt = await this.decryptorFor(message, key, sender)
    } catch (error) {
      // No key for this group epoch (we were not a member then, or its key is not provably from a member): this message only.
      if (!(error instanceof GroupKeyUnavailable)) throw error
      if (message.kind === 'image') return unopenedFile(message, opened, error.message)
      return {...opened, kind: 'text', text: null, verification: {status: 'undecryptable', reason: error.message}}
    }
    const arrival = this.arrival(message)
    if (message.kind === 'image') return this.files.open(message, opened, decrypt, sender, arrival, direct)
    try {
      const decrypted = await decrypt.text(message.ciphertext)
      const content = unpackText(decrypted.text)
      const verification = judgeBinding(judge(decrypted.verification, message.from, sender), content?.binding ?? null, arrival)
      // Older clients' plain text is still shown, as not verified (not bound to this conversation).
      return {...opened, kind: 'text', text: content?.text ?? decrypted.text, verification, ...(content ? {signedId: content.binding.id} : {})}
    } catch (error) {
      if (!(error instanceof CryptoError)) throw error
      return {...opened, kind: 'text', text: null, verification: {status: 'undecryptable', reason: error.message}}
    }
  }

  /** How the server delivered `message`: what its signed binding must match. */
  private arrival(message: HistoryMessage): Arrival {
    return {to: message.to, epoch: message.epoch, sentAt: message.sentAt, from: message.from, fromMe: this.session.isMe(message.from), me: this.session.username}
  }

  /** Our own key for a message to us; the epoch's key for a group message. */
  private async decryptorFor(message: HistoryMessage, key: UnlockedKey, sender: SenderKey): Promise<Decryptor> {
    // With no key at all for the sender, still decrypt (checking against our own key, which cannot match); judge() never calls it verified.
    const senderPublicKey = sender?.publicKey ?? key.publicKey
    const groupId = message.to.group
    if (!groupId) {
      return {text: (armored) => decryptText({armored, key, senderPublicKey}), bytes: (data) => decryptBytes({data, key, senderPublicKey})}
    }
    if (typeof message.epoch !== 'number') throw new GroupKeyUnavailable('This group message names no key epoch.')
    const groupKey = await this.directory.groupKeys.forEpoch(groupId, message.epoch)
    return {
      text: (armored) => decryptGroupText({armored, key: groupKey, senderPublicKey}),
      bytes: (data) => decryptGroupBytes({data, key: groupKey, senderPublicKey}),
    }
  }
}

