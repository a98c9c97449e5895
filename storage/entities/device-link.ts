import {Column, CreateDateColumn, Entity, PrimaryColumn} from 'typeorm'

/** A new device's request to be linked to an account (`fastchat device link`); a few minutes long, single use. */
@Entity({name: 'device_links'})
export class DeviceLink {
  /** The public half of the code the new device prints: 6 Crockford base32 characters. */
  @PrimaryColumn({type: 'text'})
  code!: string

  /** SHA-256 of the polling secret only the new device holds. */
  @Column({name: 'secret_hash', type: 'bytea'})
  secretHash!: Buffer

  /** The new device's one-time armored public key. */
  @Column({name: 'public_key', type: 'text'})
  publicKey!: string

  /** An armored message encrypted under the code's secret half (never sent to the server), naming the one-time key. */
  @Column({name: 'check_text', type: 'text'})
  checkText!: string

  @Column({type: 'text'})
  name!: string

  @CreateDateColumn({name: 'created_at', type: 'timestamptz'})
  createdAt!: Date

  @Column({name: 'expires_at', type: 'timestamptz'})
  expiresAt!: Date

  @Column({name: 'approved_by', type: 'bigint', nullable: true})
  approvedBy!: string | null

  /** The approving device's payload, encrypted to the one-time key. */
  @Column({type: 'text', nullable: true})
  ciphertext!: string | null

  @Column({name: 'consumed_at', type: 'timestamptz', nullable: true})
  consumedAt!: Date | null
}
