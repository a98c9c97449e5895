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

  /** The device's public handle (GET /v1/devices, DELETE /v1/devices/:id), made by the server at login; the token hash stays secret. */
  @Column({type: 'uuid'})
  id!: string

  /** Unique among the user's sessions when created (" (2)" appended when taken). */
  @Column({name: 'device_name', type: 'text', default: 'unnamed'})
  deviceName!: string
}
