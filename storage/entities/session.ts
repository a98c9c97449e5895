import {Column, CreateDateColumn, Entity, PrimaryColumn} from 'typeorm'

/** A login. Only the SHA-256 of the bearer token is stored. */
@Entity({name: 'sessions'})
export class Session {
  @PrimaryColumn({name: 'token_hash', type: 'bytea'})
  tokenHash!: Buffer

  @Column({name: 'user_id', type: 'bigint'})
  userId!: string

  @CreateDateColumn({name: 'created_at', type: 'timestamptz'})
  createdAt!: Date

  @Column({name: 'expires_at', type: 'timestamptz'})
  expiresAt!: Date

  /** Recorded at most once an hour; a session unused for FASTCHAT_SESSION_IDLE_HOURS ends. */
  @Column({name: 'last_used_at', type: 'timestamptz', default: () => 'now()'})
  lastUsedAt!: Date
}
