import {Column, Entity, PrimaryColumn} from 'typeorm'

/**
 * The registry of chat servers, shared by every superserver. Health is derived
 * from `lastSeen` against the database clock, so superservers on different
 * machines agree on it.
 */
@Entity({name: 'chat_servers'})
export class ChatServer {
  @PrimaryColumn({type: 'uuid'})
  id!: string

  @Column({type: 'text'})
  url!: string

  @Column({name: 'registered_at', type: 'timestamptz', default: () => 'now()'})
  registeredAt!: Date

  @Column({name: 'last_seen', type: 'timestamptz', default: () => 'now()'})
  lastSeen!: Date

  @Column({type: 'boolean', default: false})
  draining!: boolean

  /** False while the server reports that its database does not answer: it is not assigned then. */
  @Column({name: 'database_ok', type: 'boolean', default: true})
  databaseOk!: boolean

  /** Clients GET /v1/assign sent to it since its last heartbeat (reset by each heartbeat): load its stats do not show yet. */
  @Column({name: 'assigned_since_beat', type: 'integer', default: 0})
  assignedSinceBeat!: number

  /** What the server reported in its last heartbeat (open polls, throughput). */
  @Column({type: 'jsonb', default: {}})
  stats!: Record<string, unknown>
}
