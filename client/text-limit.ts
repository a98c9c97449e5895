import {MAX_CIPHERTEXT_BYTES} from '../protocol/primitives.js'
import {FastChatError} from './errors.js'

/**
 * The server refuses a text whose armored ciphertext is over
 * MAX_CIPHERTEXT_BYTES (a 413 that speaks of request bodies). Checked here,
 * before anything is sent, in the user's terms: the limit, the size, and the
 * way that has none (a file). `to` is the recipient as it can be typed again.
 */
export function assertTextFits(ciphertext: string, to: string): void {
  const bytes = Buffer.byteLength(ciphertext)
  if (bytes <= MAX_CIPHERTEXT_BYTES) return
  throw new FastChatError(
    'FC_MESSAGE_TOO_LARGE',
    `Messages are at most ${MAX_CIPHERTEXT_BYTES / 1024} KiB once encrypted (this one is ${Math.ceil(bytes / 1024)} KiB); nothing was sent.`,
    {to, bytes, limit: MAX_CIPHERTEXT_BYTES},
  )
}
