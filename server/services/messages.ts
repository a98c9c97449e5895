import type {EntityManager} from 'typeorm'

import type {MessageKind} from '../../storage/entities/message.js'
import type {BlobRepository} from '../../storage/repositories/blob.repository.js'
import type {MessageRow} from '../../storage/repositories/message-columns.js'
import type {NewDirectMessage, NewGroupMessage, StoredMessage} from '../../storage/repositories/message.repository.js'
import type {SessionUser} from '../../storage/repositories/session.repository.js'
import type {AccountService} from './accounts.js'
import type {CommittedMessage} from '../delivery/views.js'
import {BlobError, MessageError, NotAcceptedError} from './errors.js'
import type {Charge, EventAppender, GroupService, Transact} from './groups.js'

export interface SendInput {
  to: {user: string} | {group: string}
  kind: MessageKind
  ciphertext: string
  blob?: string
  epoch?: number
}

/** What sending and history need from storage (MessageRepository). */
export interface MessageStore {
  /** Stores a 1:1 message and its event, committed when it resolves; undefined: the recipient blocks the sender. */
  storeDirect(message: NewDirectMessage): Promise<StoredMessage | undefined>
  /** Inside the caller's transaction; undefined when a concurrent send with the same idempotency key committed first. */
  insertGroup(tx: EntityManager, message: NewGroupMessage): Promise<{id: string; sentAt: Date} | undefined>
  findByIdempotencyKey(tx: EntityManager, message: NewDirectMessage | NewGroupMessage): Promise<StoredMessage | undefined>
  history(conversation: string, before: string | undefined, limit: number, memberId?: string): Promise<MessageRow[]>
  exists(conversation: string, id: string): Promise<boolean>
  /** Whether the user has a second live session (another device), inside the caller's transaction. */
  hasOtherDevices(tx: EntityManager, userId: string): Promise<boolean>
}

/** What sending tells delivery (server/delivery/delivery.ts) after each commit. */
export interface Commits {
  /** Events the recipients' listeners must read back (group changes). */
  announce(userIds: string[]): void
  /** Committed messages, with each recipient's seq: handed to their listeners as they are. */
  deliver(messages: CommittedMessage[]): void
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
    private readonly messages: MessageStore,
    private readonly accounts: AccountService,
    private readonly blobs: BlobRepository,
    private readonly delivery: Commits,
    private readonly groups: GroupService,
    private readonly stream: EventAppender,
    private readonly transact: Transact,
  ) {}

  /** `charge` hears how many streams a group send reaches, before it is stored (its cost against the rate limit). */
  async send(sender: SessionUser, input: SendInput, idempotencyKey: string | undefined, charge?: Charge): Promise<StoredMessage> {
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
    let stored: StoredMessage | undefined
    let to: MessageView['to']
    if ('group' in input.to) {
      to = {group: input.to.group}
      const groupId = input.to.group
      stored = await this.sendToGroup(sender, {...common, groupId, epoch: input.epoch!, conversation: groupConversation(groupId)}, charge)
    } else {
      const recipient = await this.accounts.resolve(input.to.user)
      const recipientId = recipient.id
      to = {user: recipient.username}
      stored = await this.messages.storeDirect({...common, recipientId, conversation: directConversation(sender.userId, recipientId)})
      // The recipient blocks the sender: nothing was stored (docs/security.md, "Blocking").
      if (!stored) throw new NotAcceptedError()
    }
    if (stored.duplicate && !stored.sameContent) {
      throw new MessageError('FC_IDEMPOTENCY_KEY_REUSED', 'This Idempotency-Key was already used for a different message.')
    }
    // Listeners here get the message at once, listeners on peers by push, as it is
    // (byte for byte what a read of the stream answers); the peers' re-check catches a lost push.
    if (!stored.duplicate) {
      const view: MessageView = {
        id: stored.id,
        from: sender.username,
        to,
        kind: input.kind,
        ciphertext: input.ciphertext,
        ...(input.blob ? {blob: input.blob} : {}),
        ...('group' in input.to ? {epoch: input.epoch!} : {}),
        sentAt: new Date(stored.sentAt).toISOString(),
      }
      this.delivery.deliver([{view, to: stored.appended}])
    }
    return stored
  }

  /**
   * A group message and its members' events, in one transaction: committed
   * before the sender hears 201. The epoch is checked under the group's row
   * lock, so it is delivered to exactly the epoch it was encrypted for.
   */
  private sendToGroup(sender: SessionUser, message: NewGroupMessage, charge: Charge | undefined): Promise<StoredMessage> {
    return this.transact(async (tx) => {
      if (message.idempotencyKey) {
        const earlier = await this.messages.findByIdempotencyKey(tx, message)
        if (earlier) return earlier
      }
      const recipients = await this.groups.recipientsOfSend(tx, sender, message.groupId, message.epoch)
      await charge?.(recipients.length)
      const inserted = await this.messages.insertGroup(tx, message)
      if (!inserted) {
        // A concurrent retry with the same key committed first; ours waited for it.
        const earlier = await this.messages.findByIdempotencyKey(tx, message)
        if (earlier) return earlier
        throw new Error('idempotency conflict without a stored message')
      }
      // The sender's own copy, for their other devices: the group still sees one member (docs/architecture.md, "Devices").
      const streams = (await this.messages.hasOtherDevices(tx, sender.userId)) ? [...recipients, sender.userId] : recipients
      const appended = await this.stream.append(tx, streams, {type: 'message', messageId: inserted.id})
      return {...inserted, duplicate: false, sameContent: true, deliveredTo: streams, appended}
    })
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
