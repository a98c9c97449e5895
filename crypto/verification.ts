import type {DecryptMessageResult, PublicKey} from 'openpgp'

import {describeError} from './errors.js'
import {formatFingerprint} from './fingerprint.js'

/**
 * What the signature on a decrypted message says about its sender. Never a
 * boolean: callers must tell "forged or tampered" from "not signed at all",
 * and show which key signed.
 */
export type Verification =
  | {status: 'valid'; signerFingerprint: string}
  | {status: 'invalid'; reason: string}
  | {status: 'unsigned'}

type Signatures = DecryptMessageResult['signatures']

/**
 * Judges the signatures openpgp found against the one key the caller pinned
 * for the claimed sender. Every signature must be a good one by that key:
 * FastChat writes exactly one, so an extra signature by anybody else means the
 * message was not made by our client as the sender sent it.
 *
 * openpgp was given only the sender's key to verify with, so a signature by
 * another key already fails its `verified` promise; the key ID comparison
 * here is a second, independent check, and gives a clearer reason.
 */
export async function verificationOf(signatures: Signatures, sender: PublicKey): Promise<Verification> {
  if (signatures.length === 0) return {status: 'unsigned'}
  // Settle all at once: awaiting them one by one would leave the others'
  // rejections pending (openpgp marks them handled, but let us not rely on it).
  const outcomes = await Promise.allSettled(signatures.map((signature) => signature.verified))
  const senderKeyIds = sender.getKeyIDs()
  const senderName = formatFingerprint(sender.getFingerprint())
  for (const [index, outcome] of outcomes.entries()) {
    const {keyID} = signatures[index]!
    if (!senderKeyIds.some((id) => id.equals(keyID))) {
      return {status: 'invalid', reason: `Signed by key ID ${keyID.toHex().toUpperCase()}, not by the sender's key ${senderName}.`}
    }
    if (outcome.status === 'rejected') {
      return {status: 'invalid', reason: `The signature by ${senderName} does not verify (${describeError(outcome.reason)}).`}
    }
  }
  return {status: 'valid', signerFingerprint: sender.getFingerprint()}
}
