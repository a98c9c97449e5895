import type {AppendedEvent} from '../../storage/repositories/event-stream.repository.js'
import {worthSplitting} from '../../storage/repositories/message.repository.js'
import type {ReceiptRepository} from '../../storage/repositories/receipt.repository.js'
import type {SessionUser} from '../../storage/repositories/session.repository.js'
import type {AccountService} from './accounts.js'
import {Coalescer} from './coalescer.js'

/** What relaying tells delivery (Delivery.deliverEvents): the events appended, handed to listeners as they are. */
export interface EventCommits {
  deliverEvents(events: AppendedEvent[]): void
}

export interface ReadReceiptInput {
  to: string
  ciphertext: string
}

/**
 * Default spacing of the read receipts' appends on one server: the requests
 * that arrive within it share one statement and one commit. A request that
 * finds no append running and none started within it goes at once (a
 * `fastchat inbox` on a quiet server waits for nothing). Under load each
 * append locks the inbox rows of every sender it names until its commit, as a
 * send does, and with one append per request (a following client's second
 * of receipts, ~10 senders) those locks and commits were the receipts' main
 * cost: sends to the same senders waited behind them (docs/benchmarks.md,
 * "Receipts").
 */
export const RECEIPT_APPEND_SPACING_MS_DEFAULT = 200
/** Requests in one append: at most 100 receipts each (RECEIPTS_PER_REQUEST_MAX), so at most 20,000 rows. */
const REQUESTS_PER_APPEND = 200

type Row = {recipientId: string; type: string; payload: Record<string, unknown>; unlessBlockedBy: string}

/**
 * Read receipts (docs/api.md, "Receipts"): end-to-end encrypted and signed by
 * the reader's client, so the server only relays them, as a `receipt.read`
 * event in the stream of each `to`. Like a message, a receipt to someone who
 * blocks its sender is dropped without a word.
 */
export class ReceiptService {
  private readonly appends: Coalescer<Row[]>

  constructor(
    private readonly receipts: ReceiptRepository,
    private readonly accounts: AccountService,
    private readonly delivery: EventCommits,
    spacingMs = RECEIPT_APPEND_SPACING_MS_DEFAULT,
  ) {
    this.appends = new Coalescer(
      async (requests) => {
        const appended = await this.receipts.append(requests.flat())
        this.delivery.deliverEvents(appended)
      },
      spacingMs,
      REQUESTS_PER_APPEND,
      worthSplitting,
    )
  }

  /**
   * Appends each receipt to its recipient's stream (the block check folded
   * into the statement, as the 1:1 send does), with the other requests of the
   * moment; resolves once committed. 404 (nothing appended) when a name is
   * unknown. Names come from the accounts' cache, as for sends.
   */
  read(reader: SessionUser, input: ReadReceiptInput[]): Promise<void> {
    return this.relay(reader, 'receipt.read', input)
  }

  /**
   * Peer offers (docs/api.md, "Peer offers"): relayed exactly as read
   * receipts are, as `peer.offer` events; the server sees ciphertext only,
   * no address.
   */
  offer(sender: SessionUser, input: ReadReceiptInput[]): Promise<void> {
    return this.relay(sender, 'peer.offer', input)
  }

  private async relay(reader: SessionUser, type: 'receipt.read' | 'peer.offer', input: ReadReceiptInput[]): Promise<void> {
    const names = [...new Set(input.map((receipt) => receipt.to.toLowerCase()))]
    const users = await Promise.all(names.map((name) => this.accounts.resolve(name)))
    const idOf = new Map(users.map((user) => [user.username.toLowerCase(), user.id]))
    await this.appends.add(
      input.map((receipt) => ({
        recipientId: idOf.get(receipt.to.toLowerCase())!,
        type,
        payload: {from: reader.username, ciphertext: receipt.ciphertext},
        unlessBlockedBy: reader.userId,
      })),
    )
  }
}
