import {Column, Entity, PrimaryColumn} from 'typeorm'

export type MessageKind = 'text' | 'image'

/**
 * A message, stored once whatever the number of recipients. `conversation`
 * names the history it belongs to: `u:<lowId>:<highId>` or `g:<groupId>`.
 */
@Entity({name: 'messages'})
export class Message {
  @PrimaryColumn({type: 'uuid'})
  id!: string

  @Column({name: 'sender_id', type: 'bigint'})
  senderId!: string

  @Column({name: 'recipient_id', type: 'bigint', nullable: true})
  recipientId!: string | null

  @Column({name: 'group_id', type: 'uuid', nullable: true})
  groupId!: string | null

  @Column({type: 'integer', nullable: true})
  epoch!: number | null

  @Column({type: 'text'})
  conversation!: string

  @Column({type: 'text'})
  kind!: MessageKind

  @Column({type: 'text'})
  ciphertext!: string

  @Column({name: 'blob_id', type: 'uuid', nullable: true})
  blobId!: string | null

  @Column({name: 'idempotency_key', type: 'text', nullable: true})
  idempotencyKey!: string | null

  @Column({name: 'sent_at', type: 'timestamptz', default: () => 'now()'})
  sentAt!: Date
}
