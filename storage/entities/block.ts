import {Column, Entity, PrimaryColumn} from 'typeorm'

/** `blockerId` refuses messages, files and group additions from `blockedId` (docs/security.md). */
@Entity({name: 'blocks'})
export class Block {
  @PrimaryColumn({name: 'blocker_id', type: 'bigint'})
  blockerId!: string

  @PrimaryColumn({name: 'blocked_id', type: 'bigint'})
  blockedId!: string

  @Column({name: 'created_at', type: 'timestamptz', default: () => 'now()'})
  createdAt!: Date
}
