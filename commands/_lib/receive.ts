import {CryptoError, decryptText, type Verification} from '../../crypto/index.js'
import type {HistoryMessage} from './api-client.js'
import type {ChatSession} from './session.js'
import {KeyDirectory} from './trust.js'

/** What a received (or sent, in history) message turned into, for printing and for --json. */
export interface OpenedMessage {
  id: string
  from: string
  to: string
  sentAt: string
  /** Null when it could not be decrypted (or is of a kind this version cannot show). */
  text: string | null
  verification: Verification | {status: 'undecryptable'; reason: string}
  /** The server has a different key for the sender than the one pinned; the message is shown as not verified. */
  keyChanged: boolean
}

/**
 * Decrypts and verifies messages. Never throws for a bad message (damaged,
 * forged, not for us): that becomes its `verification`. It does throw when
 * the network fails while looking up a sender's key, so that the caller
 * leaves its cursor where it was and tries again later.
 */
export class MessageOpener {
  constructor(
    private readonly session: ChatSession,
    private readonly keys = new KeyDirectory(session),
  ) {}

  async open(message: HistoryMessage): Promise<OpenedMessage> {
    const base = {id: message.id, from: message.from, to: message.to.user ?? `group:${message.to.group}`, sentAt: message.sentAt, keyChanged: false}
    if (message.kind !== 'text') {
      return {...base, text: null, verification: {status: 'undecryptable', reason: `${message.kind} messages are not supported by this version`}}
    }
    // The passphrase is asked for at the first message, not before: an empty inbox needs no key.
    const key = await this.session.key()
    // Our own messages (history) were encrypted to us too and are checked against our own key.
    const sender = this.session.isMe(message.from) ? {publicKey: key.publicKey, keyChanged: false} : await this.keys.forVerifying(message.from)
    try {
      // With no key at all for the sender, still decrypt (against our own key, which cannot match) but never claim it verified.
      const opened = await decryptText({armored: message.ciphertext, key, senderPublicKey: sender?.publicKey ?? key.publicKey})
      let verification: OpenedMessage['verification'] = opened.verification
      if (!sender) verification = {status: 'invalid', reason: `${message.from} has no public key on the server`}
      else if (sender.keyChanged) {
        // Follow the warning printed with it: a message from a changed key is not shown as verified,
        // whatever the signature says; `keys verify` is where the user settles it.
        verification = {status: 'invalid', reason: `${message.from}'s key has changed (signature by the pinned key: ${opened.verification.status})`}
      }
      return {...base, text: opened.text, verification, keyChanged: Boolean(sender?.keyChanged)}
    } catch (error) {
      if (!(error instanceof CryptoError)) throw error
      return {...base, text: null, verification: {status: 'undecryptable', reason: error.message}, keyChanged: Boolean(sender?.keyChanged)}
    }
  }
}

/** The human form: `[sentAt] from: text  ✔ verified`, with a warning line before it when the key changed. */
export function formatMessage(message: OpenedMessage): string[] {
  const lines: string[] = []
  if (message.keyChanged) lines.push(`WARNING: ${message.from}'s key has changed; this message is NOT verified`)
  const head = `[${message.sentAt}] ${message.from}:`
  const {verification} = message
  if (verification.status === 'undecryptable' || message.text === null) {
    const reason = 'reason' in verification ? ` (${verification.reason})` : ''
    lines.push(`${head} ✘ could not decrypt message ${message.id}${reason}`)
    return lines
  }
  const mark =
    verification.status === 'valid'
      ? '✔ verified'
      : verification.status === 'unsigned'
        ? '✘ NOT VERIFIED (not signed)'
        : `✘ NOT VERIFIED (${verification.reason})`
  lines.push(`${head} ${printable(message.text)}  ${mark}`)
  return lines
}

/**
 * Text from the network must not drive the terminal: escape sequences could
 * rewrite earlier lines (a forged "✔ verified", say). Control characters other
 * than newline and tab are shown as \uXXXX.
 */
export function printable(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)
}
