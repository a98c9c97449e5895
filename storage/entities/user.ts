import {Column, CreateDateColumn, Entity, PrimaryGeneratedColumn} from 'typeorm'

/** An account. `usernameKey` is the case-folded name that uniqueness is enforced on. */
@Entity({name: 'users'})
export class User {
  @PrimaryGeneratedColumn({type: 'bigint'})
  id!: string

  @Column({type: 'text'})
  username!: string

  @Column({name: 'username_key', type: 'text', unique: true})
  usernameKey!: string

  @Column({name: 'password_hash', type: 'text'})
  passwordHash!: string

  @Column({name: 'public_key', type: 'text'})
  publicKey!: string

  @Column({type: 'text'})
  fingerprint!: string

  @CreateDateColumn({name: 'created_at', type: 'timestamptz'})
  createdAt!: Date

  /** When a poll or stream of theirs was last recorded (coarse: see server/services/presence.ts); null while hidden. */
  @Column({name: 'last_seen_at', type: 'timestamptz', nullable: true})
  lastSeenAt!: Date | null

  /** The presence last announced to their contacts. */
  @Column({name: 'presence_online', type: 'boolean', default: false})
  presenceOnline!: boolean

  /** `fastchat presence off`: their presence shows to nobody. */
  @Column({name: 'presence_hidden', type: 'boolean', default: false})
  presenceHidden!: boolean
}
