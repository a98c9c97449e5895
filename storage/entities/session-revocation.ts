import {Column, Entity, PrimaryGeneratedColumn} from 'typeorm'

/** One revocation in the feed chat servers follow: a token (logout) or every session of a user (log out everywhere). */
@Entity({name: 'session_revocations'})
export class SessionRevocation {
  @PrimaryGeneratedColumn({type: 'bigint'})
  id!: string

  @Column({name: 'token_hash', type: 'bytea', nullable: true})
  tokenHash!: Buffer | null

  @Column({name: 'user_id', type: 'bigint', nullable: true})
  userId!: string | null

  @Column({type: 'timestamptz', default: () => 'now()'})
  at!: Date
}
