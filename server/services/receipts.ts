import type {AppendedEvent, EventToAppend} from '../../storage/repositories/event-stream.repository.js'
import type {ReceiptPublisher} from '../../storage/repositories/receipt.repository.js'
import type {SessionUser} from '../../storage/repositories/session.repository.js'
import type {AccountService} from './accounts.js'

/** What relaying tells delivery (Delivery.deliverEvents): the events appended, handed to listeners as they are. */
export interface EventCommits {
  deliverEvents(events: AppendedEvent[]): void
}

/** Where relayed events are appended: with the 1:1 sends' statements (MessageRepository.appendEvents). */
export interface EventAppender {
  appendEvents(events: EventToAppend[]): Promise<AppendedEvent[]>
}

export interface ReadReceiptInput {
  to: string
  ciphertext: string
}

/** Which (blocker, blocked) pairs are blocks (BlockRepository.blockedPairs): one query per flush of read receipts. */
export interface PairBlocks {
  blockedPairs(pairs: [blockerId: string, blockedId: string][]): Promise<Set<string>>
}

/** Read receipts in one `receipt.read` event at most; more to the same user in one flush make more events. */
export const READ_RECEIPTS_PER_EVENT = 100
/** Ciphertext bytes in one `receipt.read` event at most (a receipt is at most 8 KiB, usually ~0.8). */
export const READ_RECEIPT_EVENT_MAX_BYTES = 64 * 1024

/** A read receipt waiting for its flush, and the request that waits for it. */
interface HeldReceipt {
  recipientId: string
  readerId: string
  from: string
  ciphertext: string
  resolve: () => void
  reject: (error: unknown) => void
}

/**
 * The `receipt.read` events of one flush: per recipient, the receipts in the
 * order they came, READ_RECEIPTS_PER_EVENT (or READ_RECEIPT_EVENT_MAX_BYTES)
 * to an event.
 */
export function readReceiptEvents(held: {recipientId: string; from: string; ciphertext: string}[]): EventToAppend[] {
  const byRecipient = new Map<string, {from: string; ciphertext: string}[]>()
  for (const receipt of held) {
    let list = byRecipient.get(receipt.recipientId)
    if (!list) byRecipient.set(receipt.recipientId, (list = []))
    list.push({from: receipt.from, ciphertext: receipt.ciphertext})
  }
  const events: EventToAppend[] = []
  for (const [recipientId, receipts] of byRecipient) {
    let part: {from: string; ciphertext: string}[] = []
    let bytes = 0
    for (const receipt of receipts) {
      if (part.length > 0 && (part.length >= READ_RECEIPTS_PER_EVENT || bytes + receipt.ciphertext.length > READ_RECEIPT_EVENT_MAX_BYTES)) {
        events.push({recipientId, type: 'receipt.read', payload: {receipts: part}})
        part = []
        bytes = 0
      }
      part.push(receipt)
      bytes += receipt.ciphertext.length
    }
    if (part.length > 0) events.push({recipientId, type: 'receipt.read', payload: {receipts: part}})
  }
  return events
}

/**
 * How long read receipts wait on the server they were posted to before they
 * go to their recipients' servers, at most: what one such flush sends to a
 * peer shares a request, and its block check one query. Their recipient's
 * server then gathers them for the recipient's window (ReceiptGatherer).
 */
export const READ_RECEIPT_TICK_MS = 100

/**
 * Read receipts on the server they were posted to (docs/architecture.md,
 * "Receipts"): held for at most a tick (READ_RECEIPT_TICK_MS, or the window
 * when shorter), then a flush asks once which receipts' recipients block
 * their readers (those are dropped without a word), makes one
 * `receipt.read` event per recipient of what is left (readReceiptEvents),
 * and publishes them: HomeAppender hands each to the server its recipient
 * listens on, which gathers every reader's receipts to that user, through
 * any server, into one event per window (ReceiptGatherer). Each request is
 * answered once all its receipts are committed, so a `204` is as durable as
 * a message's `201`; a failed flush fails the requests it held (their
 * clients send the receipts again). Flushes do not wait for one another:
 * each waits for its recipients' windows.
 */
export class ReadReceiptBatcher {
  private pending: HeldReceipt[] = []
  private timer: NodeJS.Timeout | undefined
  private readonly flushes = new Set<Promise<void>>()
  private tickMs: number
  /** Flushes written, the events they published and the receipts in them; receipts dropped by blocks. */
  readonly stats = {flushes: 0, events: 0, receipts: 0, dropped: 0}

  constructor(
    /** Appends the events on their recipients' servers, gathered there per window (HomeAppender, ReceiptGatherer). */
    private readonly events: ReceiptPublisher,
    private readonly blocks: PairBlocks,
    windowMs: number,
  ) {
    this.tickMs = Math.min(READ_RECEIPT_TICK_MS, windowMs)
  }

  /** Holds a reader's receipts (recipients resolved, unknown names refused before); resolves once all are committed. */
  add(reader: {userId: string; username: string}, receipts: {recipientId: string; ciphertext: string}[]): Promise<void> {
    const settled = receipts.map(
      (receipt) =>
        new Promise<void>((resolve, reject) => {
          this.pending.push({recipientId: receipt.recipientId, readerId: reader.userId, from: reader.username, ciphertext: receipt.ciphertext, resolve, reject})
        }),
    )
    // The requests of a tick go together (a draining server's tick is 0: the end of this turn of the event loop).
    this.timer ??= setTimeout(() => this.flush(), this.tickMs)
    return Promise.all(settled).then(() => undefined)
  }

  /** A draining server: what is held goes now, and so does whatever still comes. Resolves when nothing is held. */
  async drain(): Promise<void> {
    this.tickMs = 0
    while (this.pending.length > 0 || this.flushes.size > 0) {
      this.flush()
      await Promise.all(this.flushes)
    }
  }

  private flush(): void {
    clearTimeout(this.timer)
    this.timer = undefined
    if (this.pending.length === 0) return
    const taken = this.pending
    this.pending = []
    const flush = this.write(taken).finally(() => this.flushes.delete(flush))
    this.flushes.add(flush)
  }

  private async write(taken: HeldReceipt[]): Promise<void> {
    try {
      const blocked = await this.blocks.blockedPairs(taken.map((held) => [held.recipientId, held.readerId]))
      const kept = blocked.size === 0 ? taken : taken.filter((held) => !blocked.has(`${held.recipientId} ${held.readerId}`))
      const events = readReceiptEvents(kept)
      const appended = events.length > 0 ? await this.events.publish(events) : []
      this.stats.flushes++
      this.stats.events += appended.length
      this.stats.receipts += kept.length
      this.stats.dropped += taken.length - kept.length
      for (const held of taken) held.resolve()
    } catch (error) {
      for (const held of taken) held.reject(error)
    }
  }
}

/**
 * Read receipts and peer offers (docs/api.md, "Receipts", "Peer offers"):
 * end-to-end encrypted and signed by the sender's client, so the server only
 * relays them, as events in the stream of each `to`. Like a message, one to
 * someone who blocks its sender is dropped without a word.
 */
export class ReceiptService {
  constructor(
    private readonly events: EventAppender,
    private readonly accounts: AccountService,
    private readonly delivery: EventCommits,
    private readonly readReceipts: ReadReceiptBatcher,
  ) {}

  /**
   * Read receipts: held per recipient and appended in `receipt.read` events
   * of several (ReadReceiptBatcher); resolves once committed. 404 (nothing
   * held) when a name is unknown. Names come from the accounts' cache, as for
   * sends.
   */
  async read(reader: SessionUser, input: ReadReceiptInput[]): Promise<void> {
    const idOf = await this.resolve(input)
    await this.readReceipts.add(
      {userId: reader.userId, username: reader.username},
      input.map((receipt) => ({recipientId: idOf.get(receipt.to.toLowerCase())!, ciphertext: receipt.ciphertext})),
    )
  }

  /**
   * Peer offers: each its own `peer.offer` event (they are few: one per
   * contact every few minutes), the block check folded into the statement,
   * riding along with the 1:1 sends of the moment (MessageRepository.appendEvents);
   * resolves once committed. 404 (nothing appended) when a name is unknown.
   */
  async offer(sender: SessionUser, input: ReadReceiptInput[]): Promise<void> {
    const idOf = await this.resolve(input)
    const appended = await this.events.appendEvents(
      input.map((offer) => ({
        recipientId: idOf.get(offer.to.toLowerCase())!,
        type: 'peer.offer',
        payload: {from: sender.username, ciphertext: offer.ciphertext},
        unlessBlockedBy: sender.userId,
      })),
    )
    this.delivery.deliverEvents(appended)
  }

  /** A service draining: held read receipts go now (ReadReceiptBatcher.drain). */
  drain(): Promise<void> {
    return this.readReceipts.drain()
  }

  private async resolve(input: ReadReceiptInput[]): Promise<Map<string, string>> {
    const names = [...new Set(input.map((item) => item.to.toLowerCase()))]
    const users = await Promise.all(names.map((name) => this.accounts.resolve(name)))
    return new Map(users.map((user) => [user.username.toLowerCase(), user.id]))
  }
}
