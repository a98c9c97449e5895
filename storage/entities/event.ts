import {Column, Entity, PrimaryColumn} from 'typeorm'

/**
 * One entry in a recipient's stream. The key (recipient, seq) is also the
 * distribution key a sharded Postgres would use.
 */
@Entity({name: 'events'})
export class Event {
  @PrimaryColumn({name: 'recipient_id', type: 'bigint'})
  recipientId!: string

  @PrimaryColumn({type: 'bigint'})
  seq!: string

  @Column({type: 'text'})
  type!: string

  @Column({name: 'message_id', type: 'uuid', nullable: true})
  messageId!: string | null

  @Column({type: 'jsonb', nullable: true})
  payload!: Record<string, unknown> | null

  @Column({name: 'created_at', type: 'timestamptz', default: () => 'now()'})
  createdAt!: Date
}
