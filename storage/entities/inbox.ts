import {Column, Entity, PrimaryColumn} from 'typeorm'

/**
 * The head of one recipient's event stream. Appending an event increments
 * `lastSeq` under this row's lock, so sequence numbers are handed out and
 * committed strictly in order per recipient (see docs/architecture.md).
 */
@Entity({name: 'inboxes'})
export class Inbox {
  @PrimaryColumn({name: 'user_id', type: 'bigint'})
  userId!: string

  @Column({name: 'last_seq', type: 'bigint', default: 0})
  lastSeq!: string

  /** Events with seq <= prunedThrough were removed by retention; older cursors get 410. */
  @Column({name: 'pruned_through', type: 'bigint', default: 0})
  prunedThrough!: string
}
