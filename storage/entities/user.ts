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
}
