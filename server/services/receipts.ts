import type {BlockRepository} from '../../storage/repositories/block.repository.js'
import type {ReceiptRepository} from '../../storage/repositories/receipt.repository.js'
import type {SessionUser} from '../../storage/repositories/session.repository.js'
import type {AccountService} from './accounts.js'
import type {Commits} from './messages.js'

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
    private readonly blocks: BlockRepository,
    private readonly delivery: Pick<Commits, 'announce'>,
  ) {}

  /** Appends each receipt to its recipient's stream, all in one transaction; 404 (nothing appended) when a name is unknown. */
  async read(reader: SessionUser, input: ReadReceiptInput[]): Promise<{relayed: number}> {
    const users = await this.accounts.findMany(input.map((receipt) => receipt.to))
    const idOf = new Map(users.map((user) => [user.username.toLowerCase(), user.id]))
    const appended = await this.receipts.transaction(async (tx) => {
      const blockers = new Set(await this.blocks.blockersAmong(tx, reader.userId, users.map((user) => user.id)))
      const events = input
        .map((receipt) => ({recipientId: idOf.get(receipt.to.toLowerCase())!, ciphertext: receipt.ciphertext}))
        .filter((receipt) => !blockers.has(receipt.recipientId))
        .map(({recipientId, ciphertext}) => ({recipientId, type: 'receipt.read', payload: {from: reader.username, ciphertext}}))
      return this.receipts.append(tx, events)
    })
    this.delivery.announce([...new Set(appended.map((event) => event.recipientId))])
    return {relayed: appended.length}
  }
}
