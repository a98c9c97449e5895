import type {MessageKind} from '../../storage/entities/message.js'
import type {BlobRepository} from '../../storage/repositories/blob.repository.js'
import type {MessageRepository, MessageRow} from '../../storage/repositories/message.repository.js'
import type {SessionUser} from '../../storage/repositories/session.repository.js'
import type {AccountService} from './accounts.js'
import type {DeliveryHub} from '../delivery/hub.js'
import {BlobError, MessageError, NotAcceptedError} from './errors.js'
import type {Charge, GroupService} from './groups.js'

export interface SendInput {
  to: {user: string} | {group: string}
  kind: MessageKind
  ciphertext: string
  blob?: string
  epoch?: number
}

export const groupConversation = (groupId: string) => `g:${groupId}`

/** The conversation key of two users: the same whoever asks. */
export function directConversation(a: string, b: string): string {
  return BigInt(a) < BigInt(b) ? `u:${a}:${b}` : `u:${b}:${a}`
}

export interface MessageView {
  id: string
  from: string
  to: {user: string} | {group: string}
  kind: MessageKind
  ciphertext: string
  blob?: string
  epoch?: number
  sentAt: string
}

export function messageView(row: MessageRow): MessageView {
  return {
    id: row.id,
    from: row.from,
    to: row.groupId ? {group: row.groupId} : {user: row.toUser!},
    kind: row.kind,
    ciphertext: row.ciphertext,
    ...(row.blobId ? {blob: row.blobId} : {}),
    ...(row.epoch !== null && row.epoch !== undefined ? {epoch: row.epoch} : {}),
    sentAt: new Date(row.sentAt).toISOString(),
  }
}

export class MessageService {
  constructor(
    private readonly messages: MessageRepository,
    private readonly accounts: AccountService,
    private readonly blobs: BlobRepository,
    private readonly hub: DeliveryHub,
    private readonly groups: GroupService,
  ) {}

  /** `charge` hears how many streams a group send reaches, before it is stored (its cost against the rate limit). */
  async send(sender: SessionUser, input: SendInput, idempotencyKey: string | undefined, charge?: Charge): Promise<{id: string; sentAt: Date; duplicate: boolean}> {
    // Only your own uploads can be attached: otherwise a guessed id would grant its reader access.
    if (input.blob && !(await this.blobs.uploadedBy(input.blob, sender.userId))) {
      throw new BlobError('FC_BLOB_NOT_FOUND', `No blob ${input.blob} uploaded by you.`)
    }
    const common = {
      senderId: sender.userId,
      kind: input.kind,
      ciphertext: input.ciphertext,
      blobId: input.blob ?? null,
      idempotencyKey: idempotencyKey ?? null,
    }
    let stored
    if ('group' in input.to) {
      const groupId = input.to.group
      const epoch = input.epoch! // the schema requires it for a group
      stored = await this.messages.storeGroup({
        ...common,
        groupId,
        epoch,
        conversation: groupConversation(groupId),
        // Checked under the group's row lock: delivered to exactly the epoch it was encrypted for.
        recipients: async (tx) => {
          const recipients = await this.groups.recipientsOfSend(tx, sender, groupId, epoch)
          await charge?.(recipients.length)
          return recipients
        },
      })
    } else {
      const recipientId = await this.accounts.idOf(input.to.user)
      stored = await this.messages.storeDirect({...common, recipientId, conversation: directConversation(sender.userId, recipientId)})
      // The recipient blocks the sender: nothing was stored (docs/security.md, "Blocking").
      if (!stored) throw new NotAcceptedError()
    }
    if (stored.duplicate && !stored.sameContent) {
      throw new MessageError('FC_IDEMPOTENCY_KEY_REUSED', 'This Idempotency-Key was already used for a different message.')
    }
    // Polls here wake at once, polls on peers by push; the peers' re-check catches a lost push.
    this.hub.announce(stored.deliveredTo)
    return stored
  }

  /** `peer` is a username, or a group id for a group's history. */
  async history(user: SessionUser, peer: {user: string} | {group: string}, before: string | undefined, limit: number): Promise<{messages: MessageView[]; next: string | null}> {
    let conversation: string
    if ('group' in peer) {
      await this.groups.requireMember(user, peer.group)
      conversation = groupConversation(peer.group)
    } else {
      const other = await this.accounts.find(peer.user)
      conversation = directConversation(user.userId, other.id)
    }
    if (before && !(await this.messages.exists(conversation, before))) {
      throw new MessageError('FC_MESSAGE_NOT_FOUND', `No message ${before} in this conversation.`)
    }
    const rows = await this.messages.history(conversation, before, limit, 'group' in peer ? user.userId : undefined)
    return {messages: rows.map(messageView), next: rows.length === limit ? rows[rows.length - 1]!.id : null}
  }
}
