import {Column, Entity, PrimaryColumn} from 'typeorm'

/** Where a user has a long-poll open: one row per chat server, refreshed while polls keep coming (docs/architecture.md). */
@Entity({name: 'presence'})
export class Presence {
  @PrimaryColumn({name: 'user_id', type: 'bigint'})
  userId!: string

  @PrimaryColumn({name: 'server_url', type: 'text'})
  serverUrl!: string

  @Column({name: 'seen_at', type: 'timestamptz', default: () => 'now()'})
  seenAt!: Date
}
