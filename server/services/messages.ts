import type {MessageKind} from '../../storage/entities/message.js'
import type {BlobRepository} from '../../storage/repositories/blob.repository.js'
import type {MessageRepository, MessageRow} from '../../storage/repositories/message.repository.js'
import type {SessionUser} from '../../storage/repositories/session.repository.js'
import {ConflictError, NotFoundError} from '../http/errors.js'
import type {AccountService} from './accounts.js'
import type {DeliveryHub} from '../delivery/hub.js'

export interface SendInput {
  to: {user: string} | {group: string}
  kind: MessageKind
  ciphertext: string
  blob?: string
  epoch?: number
}

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
  ) {}

  async send(sender: SessionUser, input: SendInput, idempotencyKey: string | undefined): Promise<{id: string; sentAt: Date; duplicate: boolean}> {
    if (!('user' in input.to)) throw new NotFoundError('FC_GROUP_NOT_FOUND', 'Groups are not available yet.')
    const recipient = await this.accounts.find(input.to.user)
    // Only your own uploads can be attached: otherwise a guessed id would grant its reader access.
    if (input.blob && !(await this.blobs.uploadedBy(input.blob, sender.userId))) {
      throw new NotFoundError('FC_BLOB_NOT_FOUND', `No blob ${input.blob} uploaded by you.`)
    }
    const stored = await this.messages.store({
      senderId: sender.userId,
      recipientId: recipient.id,
      groupId: null,
      epoch: null,
      conversation: directConversation(sender.userId, recipient.id),
      kind: input.kind,
      ciphertext: input.ciphertext,
      blobId: input.blob ?? null,
      idempotencyKey: idempotencyKey ?? null,
      deliverTo: [recipient.id],
    })
    if (stored.duplicate && !stored.sameContent) {
      throw new ConflictError('FC_IDEMPOTENCY_KEY_REUSED', 'This Idempotency-Key was already used for a different message.')
    }
    // Polls on this server wake at once; others hear the NOTIFY committed with the message.
    if (!stored.duplicate) this.hub.notify([recipient.id])
    return stored
  }

  async history(user: SessionUser, peer: string, before: string | undefined, limit: number): Promise<{messages: MessageView[]; next: string | null}> {
    const other = await this.accounts.find(peer)
    const conversation = directConversation(user.userId, other.id)
    if (before && !(await this.messages.exists(conversation, before))) {
      throw new NotFoundError('FC_MESSAGE_NOT_FOUND', `No message ${before} in this conversation.`)
    }
    const rows = await this.messages.history(conversation, before, limit)
    return {messages: rows.map(messageView), next: rows.length === limit ? rows[rows.length - 1]!.id : null}
  }
}
