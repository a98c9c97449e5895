import type {AppendedEvent} from '../../storage/repositories/event-stream.repository.js'
import type {ReceiptRepository} from '../../storage/repositories/receipt.repository.js'
import type {SessionUser} from '../../storage/repositories/session.repository.js'
import type {AccountService} from './accounts.js'

/** What relaying tells delivery (Delivery.deliverEvents): the events appended, handed to listeners as they are. */
export interface EventCommits {
  deliverEvents(events: AppendedEvent[]): void
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
    private readonly receipts: ReceiptRepository,
    private readonly accounts: AccountService,
    private readonly delivery: EventCommits,
  ) {}

  /**
   * Appends each receipt to its recipient's stream, all in one statement (the
   * block check folded in, as the 1:1 send does); 404 (nothing appended) when
   * a name is unknown. Names come from the accounts' cache, as for sends.
   */
  async read(reader: SessionUser, input: ReadReceiptInput[]): Promise<{relayed: number}> {
    const names = [...new Set(input.map((receipt) => receipt.to.toLowerCase()))]
    const users = await Promise.all(names.map((name) => this.accounts.resolve(name)))
    const idOf = new Map(users.map((user) => [user.username.toLowerCase(), user.id]))
    const events = input.map((receipt) => ({
      recipientId: idOf.get(receipt.to.toLowerCase())!,
      type: 'receipt.read',
      payload: {from: reader.username, ciphertext: receipt.ciphertext},
    }))
    const appended = await this.receipts.appendFrom(reader.userId, events)
    this.delivery.deliverEvents(appended)
    return {relayed: appended.length}
  }
}
