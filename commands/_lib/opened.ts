import type {Verification} from '../../crypto/index.js'
import {printable} from './display.js'
import type {KeyForVerifying} from './trust.js'

/** What received messages of every kind share, and the trust rules they are judged by. */

export type MessageVerification =
  | Verification
  | {status: 'undecryptable'; reason: string}
  /** A file listed by `history` without --download: there was nothing to verify. */
  | {status: 'not-downloaded'}

/** What every opened message has, whatever its kind. */
export interface OpenedBase {
  id: string
  from: string
  to: string
  sentAt: string
  verification: MessageVerification
  /** The server has a different key for the sender than the one pinned; the message is shown as not verified. */
  keyChanged: boolean
}

/** The key a message is checked against (see KeyDirectory.forVerifying); null when the sender has none. */
export type SenderKey = Pick<KeyForVerifying, 'publicKey' | 'keyChanged'> | null

/**
 * The trust rules (DESIGN.md section 4, docs/cli.md "Trust") applied to what
 * the signature said: no key for the sender, or a key that changed on the
 * server, is never "verified", whatever the signature says.
 */
export function judge(verification: Verification, from: string, sender: SenderKey): Verification {
  if (!sender) return {status: 'invalid', reason: `${from} has no public key on the server`}
  // Follow the warning printed with it: `keys verify` is where the user settles it.
  if (sender.keyChanged) return {status: 'invalid', reason: `${from}'s key has changed (signature by the pinned key: ${verification.status})`}
  return verification
}

/** `✔ verified` or `✘ NOT VERIFIED (why)`; empty for a file that was not downloaded. */
export function verificationMark(verification: MessageVerification): string {
  switch (verification.status) {
    case 'valid':
      return '✔ verified'
    case 'unsigned':
      return '✘ NOT VERIFIED (not signed)'
    case 'not-downloaded':
      return ''
    default:
      return `✘ NOT VERIFIED (${printable(verification.reason)})`
  }
}
