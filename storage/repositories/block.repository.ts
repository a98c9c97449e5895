import type {DataSource, EntityManager} from 'typeorm'

export interface BlockRow {
  username: string
  blockedAt: Date
}

/**
 * Who blocks whom. The send paths do not call this: their block checks are
 * folded into the statements they run anyway (MessageRepository.storeDirect,
 * GroupRepository.sendingEpoch), so a send costs no extra round trip.
 */
export class BlockRepository {
  constructor(private readonly db: DataSource) {}

  /** Blocks `blockedId` for `blockerId`; `created` is false if it already was. */
  async add(blockerId: string, blockedId: string): Promise<{created: boolean; blockedAt: Date}> {
    const [inserted] = (await this.db.query(
      `INSERT INTO blocks (blocker_id, blocked_id) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING created_at AS "blockedAt"`,
      [blockerId, blockedId],
    )) as {blockedAt: Date}[]
    if (inserted) return {created: true, blockedAt: inserted.blockedAt}
    const [existing] = (await this.db.query('SELECT created_at AS "blockedAt" FROM blocks WHERE blocker_id = $1 AND blocked_id = $2', [
      blockerId,
      blockedId,
    ])) as {blockedAt: Date}[]
    // Unblocked again in between: the block we were asked for is not there, so make it.
    return existing ? {created: false, blockedAt: existing.blockedAt} : this.add(blockerId, blockedId)
  }

  async remove(blockerId: string, blockedId: string): Promise<void> {
    await this.db.query('DELETE FROM blocks WHERE blocker_id = $1 AND blocked_id = $2', [blockerId, blockedId])
  }

  /** Everyone `blockerId` blocks, by name. */
  async list(blockerId: string): Promise<BlockRow[]> {
    return (await this.db.query(
      `SELECT u.username, b.created_at AS "blockedAt" FROM blocks b JOIN users u ON u.id = b.blocked_id
        WHERE b.blocker_id = $1 ORDER BY u.username_key`,
      [blockerId],
    )) as BlockRow[]
  }

  /** Those of `userIds` who block `blockedId`. */
  async blockersAmong(tx: EntityManager, blockedId: string, userIds: string[]): Promise<string[]> {
    const rows = (await tx.query('SELECT blocker_id::text AS id FROM blocks WHERE blocked_id = $1 AND blocker_id = ANY($2::bigint[])', [
      blockedId,
      userIds,
    ])) as {id: string}[]
    return rows.map((row) => row.id)
  }

  /**
   * Which of the pairs `[blockerId, blockedId]` are blocks, as `"<blocker> <blocked>"`
   * keys: one statement for a flush of read receipts (ReadReceiptBatcher).
   */
  async blockedPairs(pairs: [blockerId: string, blockedId: string][]): Promise<Set<string>> {
    const unique = [...new Map(pairs.map((pair) => [`${pair[0]} ${pair[1]}`, pair])).values()]
    if (unique.length === 0) return new Set()
    const rows = (await this.db.query(
      `SELECT b.blocker_id::text AS blocker, b.blocked_id::text AS blocked
         FROM unnest($1::bigint[], $2::bigint[]) AS p(blocker, blocked)
         JOIN blocks b ON b.blocker_id = p.blocker AND b.blocked_id = p.blocked`,
      [unique.map((pair) => pair[0]), unique.map((pair) => pair[1])],
    )) as {blocker: string; blocked: string}[]
    return new Set(rows.map((row) => `${row.blocker} ${row.blocked}`))
  }
}
