/**
 * What the client library has to tell besides messages and group events, as
 * data: a program decides what to do with it, the CLI turns each into a line
 * (commands/_lib/format.ts).
 */
export type Report =
  /** A key was pinned on first use: the user has never compared its fingerprint. */
  | {type: 'key.pinned'; username: string; fingerprint: string}
  /** The server's copy of the stream lost events before we read them (`expired`), or is behind our cursor (`ahead`). */
  | {type: 'cursor.reset'; from: number; to: number; reason: 'expired' | 'ahead'}
  /** An event that does not match the API was skipped (the cursor moved past it). `seq` is null when it had none. */
  | {type: 'event.skipped'; seq: number | null; reason: string}
  /** We made the key of a group's new epoch, answering `group.rekey_needed`. */
  | {type: 'group.keyed'; group: string; name: string; epoch: number}
  /** Answering `group.rekey_needed` failed; another member, or the next send, keys it. */
  | {type: 'group.rekey_failed'; group: string; code: string | undefined; message: string; network: boolean}
  /** A history page held a message that does not match the API: left out. */
  | {type: 'message.skipped'; reason: string}
  /** A stream that follows (`messages()`) lost its server; it retries, failing over, until one answers. */
  | {type: 'connection.lost'; server: string; reason: string}
  /** ...and is back, on `server`. */
  | {type: 'connection.restored'; server: string}
  /**
   * How a stream that follows reads events, when first chosen and when it
   * changes: `stream` (SSE) or `poll` (long poll); `reason` says why it fell
   * back to the long poll (the server's or a proxy's answer, quoted: not sanitized).
   */
  | {type: 'transport'; transport: 'stream' | 'poll'; reason?: string}
  /** Read receipts for messages shown could not be sent (./receipts.ts); the messages were shown all the same. */
  | {type: 'receipts.failed'; reason: string}
  /** A message that went only directly was refused by the server when committed later (./peer.ts): not retried. */
  | {type: 'outbox.dropped'; to: string; reason: string}
  /** The peer endpoint listens at these addresses, offered to `offered` contacts (again every few minutes). */
  | {type: 'peer.listening'; urls: string[]; offered: number}
  /** The peer endpoint could not be opened or offered: the servers carry everything. */
  | {type: 'peer.failed'; reason: string}

export type Reporter = (report: Report) => void
