import type {AppendedEvent, EventToAppend} from '../../storage/repositories/event-stream.repository.js'
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

/**
 * Read receipts (docs/api.md, "Receipts"): end-to-end encrypted and signed by
 * the reader's client, so the server only relays them, as a `receipt.read`
 * event in the stream of each `to`. Like a message, a receipt to someone who
 * blocks its sender is dropped without a word.
 */
export class ReceiptService {
  constructor(
    private readonly events: EventAppender,
    private readonly accounts: AccountService,
    private readonly delivery: EventCommits,
  ) {}

  /**
   * Appends each receipt to its recipient's stream (the block check folded
   * into the statement, as the 1:1 send does), riding along with the 1:1
   * sends of the moment (MessageRepository.appendEvents: no commit of its own
   * under load, so no second holder of the senders' inbox locks); resolves
   * once committed. 404 (nothing appended) when a name is unknown. Names come
   * from the accounts' cache, as for sends.
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
    const appended = await this.events.appendEvents(
      input.map((receipt) => ({
        recipientId: idOf.get(receipt.to.toLowerCase())!,
        type,
        payload: {from: reader.username, ciphertext: receipt.ciphertext},
        unlessBlockedBy: reader.userId,
      })),
    )
    this.delivery.deliverEvents(appended)
  }
}
