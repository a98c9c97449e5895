import {Column, CreateDateColumn, Entity, PrimaryColumn} from 'typeorm'

export type GroupRole = 'admin' | 'member'

@Entity({name: 'groups'})
export class Group {
  @PrimaryColumn({type: 'uuid'})
  id!: string

  @Column({type: 'text'})
  name!: string

  @Column({name: 'created_by', type: 'bigint'})
  createdBy!: string

  /** The current key epoch; every membership change increments it. */
  @Column({type: 'integer', default: 1})
  epoch!: number

  @CreateDateColumn({name: 'created_at', type: 'timestamptz'})
  createdAt!: Date
}

@Entity({name: 'group_members'})
export class GroupMember {
  @PrimaryColumn({name: 'group_id', type: 'uuid'})
  groupId!: string

  @PrimaryColumn({name: 'user_id', type: 'bigint'})
  userId!: string

  @Column({type: 'text'})
  role!: GroupRole

  @Column({name: 'joined_at', type: 'timestamptz', default: () => 'now()'})
  joinedAt!: Date
}

/** The member set of one key epoch, fixed when the epoch starts. */
@Entity({name: 'group_epochs'})
export class GroupEpoch {
  @PrimaryColumn({name: 'group_id', type: 'uuid'})
  groupId!: string

  @PrimaryColumn({type: 'integer'})
  epoch!: number

  @Column({name: 'member_ids', type: 'bigint', array: true})
  memberIds!: string[]

  @Column({name: 'keyed_by', type: 'bigint', nullable: true})
  keyedBy!: string | null

  @CreateDateColumn({name: 'created_at', type: 'timestamptz'})
  createdAt!: Date
}

/** One member's copy of an epoch's group key, wrapped to that member's public key. */
@Entity({name: 'group_keys'})
export class GroupKey {
  @PrimaryColumn({name: 'group_id', type: 'uuid'})
  groupId!: string

  @PrimaryColumn({type: 'integer'})
  epoch!: number

  @PrimaryColumn({name: 'user_id', type: 'bigint'})
  userId!: string

  @Column({name: 'wrapped_key', type: 'text'})
  wrappedKey!: string
}

/** An open invitation: the invitee is not a member (no messages, no keys) until they join. */
@Entity({name: 'group_invitations'})
export class GroupInvitation {
  @PrimaryColumn({name: 'group_id', type: 'uuid'})
  groupId!: string

  @PrimaryColumn({name: 'user_id', type: 'bigint'})
  userId!: string

  @Column({name: 'invited_by', type: 'bigint'})
  invitedBy!: string

  @CreateDateColumn({name: 'invited_at', type: 'timestamptz'})
  invitedAt!: Date
}
