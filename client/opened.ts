import type {Verification} from '../crypto/index.js'
import {type Arrival, type Binding, bindingProblem} from './message-content.js'
import type {KeyForVerifying} from './trust.js'

/** What received messages of every kind share, and the trust rules they are judged by. */

export type MessageVerification =
  | Verification
  | {status: 'undecryptable'; reason: string}
  /** A file listed by `history` without --download: there was nothing to verify. */
  | {status: 'not-downloaded'}

/** The group a message was sent to, and the key epoch it was encrypted under. `name` is null when unknown (a group you left). */
export interface MessageGroup {
  id: string
  name: string | null
  epoch: number
}

/** What every opened message has, whatever its kind. */
export interface OpenedBase {
  id: string
  from: string
  /** The recipient: a username, or `group:<id>` for a group message. */
  to: string
  /** Only for a group message. */
  group?: MessageGroup
  sentAt: string
  verification: MessageVerification
  /** The server has a different key for the sender than the one pinned; the message is shown as not verified. */
  keyChanged: boolean
  /** The id the sender signed (./message-content.ts), when the message had one: a second message with it is a replay. */
  signedId?: string
  /** Present, true, when I sent it (from this device or another of mine: a sent copy in my own stream). */
  sent?: true
  /** How it came, when a peer endpoint is open (./peer.ts): straight from the sender's client, or from the server. */
  via?: 'direct' | 'server'
  /** In history, on my own messages: sent (✓), delivered (✓✓: the server's flag or a receipt), or read (client/receipts.ts). */
  status?: 'sent' | 'delivered' | 'read'
  /** With `status`: who got and who read it, as receipts said; for a group message, how many other members it has now. */
  receipts?: {deliveredTo: string[]; readBy: string[]; members?: number}
}

/**
 * Opens the parts of one message with the right key (ours for a message to
 * us, the epoch's key for a group message), checking signatures against the
 * sender's key. Throws CryptoError when a part cannot be decrypted.
 */
export interface Decryptor {
  text(armored: string): Promise<{text: string; verification: Verification}>
  bytes(data: Uint8Array): Promise<{data: Uint8Array; verification: Verification}>
}

/** The key a message is checked against (see KeyDirectory.forVerifying); null when the sender has none. */
export type SenderKey = Pick<KeyForVerifying, 'publicKey' | 'keyChanged' | 'known'> | null

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

/**
 * A valid signature over content written for another conversation, or long
 * ago, is not verified (./message-content.ts); anything else stands.
 */
export function judgeBinding(verification: Verification, bound: Binding | null, arrival: Arrival): Verification {
  if (verification.status !== 'valid') return verification
  const problem = bindingProblem(bound, arrival)
  return problem ? {status: 'invalid', reason: problem} : verification
}

