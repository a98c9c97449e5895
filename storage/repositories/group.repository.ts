import type {EntityManager} from 'typeorm'

import type {GroupRole} from '../entities/group.js'

export interface GroupRow {
  id: string
  name: string
  epoch: number
  createdAt: Date
}

export interface MemberRow {
  userId: string
  username: string
  role: GroupRole
  fingerprint: string
  joinedAt: Date
}

export interface EpochRow {
  epoch: number
  memberIds: string[]
  keyedBy: string | null
}

/** An open invitation, as its invitee lists it or a member sees it. */
export interface InvitationRow {
  groupId: string
  name: string
  userId: string
  username: string
  invitedBy: string
  invitedAt: Date
}

export interface GroupSummary {
  id: string
  name: string
  epoch: number
  role: GroupRole
  members: number
}

/**
 * Queries over groups, members, epochs and wrapped keys. Every method runs
 * on the caller's transaction (or the data source's manager): the rules that
 * tie them together, and the row lock that serialises membership changes,
 * live in GroupService.
 */
export class GroupRepository {
  async insert(tx: EntityManager, group: {id: string; name: string; createdBy: string}, members: {userId: string; role: GroupRole}[], invitees: string[] = []): Promise<void> {
    await tx.query('INSERT INTO groups (id, name, created_by, epoch) VALUES ($1, $2, $3, 1)', [group.id, group.name, group.createdBy])
    // joined_at increases in list order, so "the oldest member" is well defined even within one insert.
    await tx.query(
      `INSERT INTO group_members (group_id, user_id, role, joined_at)
       SELECT $1, m.user_id, m.role, now() + (m.ord * interval '1 microsecond')
         FROM unnest($2::bigint[], $3::text[]) WITH ORDINALITY AS m(user_id, role, ord)`,
      [group.id, members.map((m) => m.userId), members.map((m) => m.role)],
    )
    if (invitees.length > 0) await this.invite(tx, group.id, invitees, group.createdBy)
    await this.startEpoch(tx, group.id, 1)
  }

  async invite(tx: EntityManager, groupId: string, userIds: string[], invitedBy: string): Promise<void> {
    await tx.query(
      `INSERT INTO group_invitations (group_id, user_id, invited_by) SELECT $1, u, $3 FROM unnest($2::bigint[]) AS u`,
      [groupId, userIds, invitedBy],
    )
  }

  /** Open invitations: of one group (for its members' view), or of one invitee (theirs), oldest first. */
  async invitations(tx: EntityManager, where: {groupId: string} | {userId: string}): Promise<InvitationRow[]> {
    const [column, value] = 'groupId' in where ? ['gi.group_id', where.groupId] : ['gi.user_id', where.userId]
    return (await tx.query(
      `SELECT gi.group_id AS "groupId", g.name, gi.user_id::text AS "userId", u.username, gi.invited_by::text AS "invitedBy", gi.invited_at AS "invitedAt"
         FROM group_invitations gi JOIN groups g ON g.id = gi.group_id JOIN users u ON u.id = gi.user_id
        WHERE ${column} = $1
        ORDER BY gi.invited_at, gi.group_id, gi.user_id`,
      [value],
    )) as InvitationRow[]
  }

  async invitation(tx: EntityManager, groupId: string, userId: string): Promise<{invitedBy: string} | undefined> {
    const [row] = (await tx.query('SELECT invited_by::text AS "invitedBy" FROM group_invitations WHERE group_id = $1 AND user_id = $2', [groupId, userId])) as {
      invitedBy: string
    }[]
    return row
  }

  /** Removes an invitation; whether there was one. */
  async uninvite(tx: EntityManager, groupId: string, userId: string): Promise<boolean> {
    const rows = (await tx.query('WITH gone AS (DELETE FROM group_invitations WHERE group_id = $1 AND user_id = $2 RETURNING 1) SELECT count(*)::int AS n FROM gone', [
      groupId,
      userId,
    ])) as {n: number}[]
    return (rows[0]?.n ?? 0) > 0
  }

  /** Ends every open invitation `inviterId` sent `inviteeId` (the invitee blocked them); how many. */
  async endInvitationsFrom(tx: EntityManager, inviteeId: string, inviterId: string): Promise<number> {
    const rows = (await tx.query(
      'WITH gone AS (DELETE FROM group_invitations WHERE user_id = $1 AND invited_by = $2 RETURNING 1) SELECT count(*)::int AS n FROM gone',
      [inviteeId, inviterId],
    )) as {n: number}[]
    return rows[0]?.n ?? 0
  }

  async invitationCount(tx: EntityManager, groupId: string): Promise<number> {
    const [row] = (await tx.query('SELECT count(*)::int AS n FROM group_invitations WHERE group_id = $1', [groupId])) as {n: number}[]
    return row?.n ?? 0
  }

  /** The group row, locked against concurrent membership changes (FOR UPDATE) or just against them while sending (FOR SHARE). */
  async lock(tx: EntityManager, groupId: string, mode: 'update' | 'share'): Promise<GroupRow | undefined> {
    const [row] = (await tx.query(
      `SELECT id, name, epoch, created_at AS "createdAt" FROM groups WHERE id = $1 FOR ${mode === 'update' ? 'UPDATE' : 'SHARE'}`,
      [groupId],
    )) as GroupRow[]
    return row
  }

  async find(tx: EntityManager, groupId: string): Promise<GroupRow | undefined> {
    const [row] = (await tx.query('SELECT id, name, epoch, created_at AS "createdAt" FROM groups WHERE id = $1', [groupId])) as GroupRow[]
    return row
  }

  /** Joined members, oldest first (invitees are in group_invitations, never here). */
  async members(tx: EntityManager, groupId: string): Promise<MemberRow[]> {
    return (await tx.query(
      `SELECT gm.user_id AS "userId", u.username, gm.role, u.fingerprint, gm.joined_at AS "joinedAt"
         FROM group_members gm JOIN users u ON u.id = gm.user_id
        WHERE gm.group_id = $1
        ORDER BY gm.joined_at, gm.user_id`,
      [groupId],
    )) as MemberRow[]
  }

  async role(tx: EntityManager, groupId: string, userId: string): Promise<GroupRole | undefined> {
    const [row] = (await tx.query('SELECT role FROM group_members WHERE group_id = $1 AND user_id = $2', [groupId, userId])) as {role: GroupRole}[]
    return row?.role
  }

  async memberCount(tx: EntityManager, groupId: string): Promise<number> {
    const [row] = (await tx.query('SELECT count(*)::int AS n FROM group_members WHERE group_id = $1', [groupId])) as {n: number}[]
    return row?.n ?? 0
  }

  async addMember(tx: EntityManager, groupId: string, userId: string, role: GroupRole): Promise<void> {
    await tx.query('INSERT INTO group_members (group_id, user_id, role) VALUES ($1, $2, $3)', [groupId, userId, role])
  }

  async removeMember(tx: EntityManager, groupId: string, userId: string): Promise<void> {
    await tx.query('DELETE FROM group_members WHERE group_id = $1 AND user_id = $2', [groupId, userId])
  }

  async setRole(tx: EntityManager, groupId: string, userId: string, role: GroupRole): Promise<void> {
    await tx.query('UPDATE group_members SET role = $3 WHERE group_id = $1 AND user_id = $2', [groupId, userId, role])
  }

  /** Moves the group to a new epoch whose member set is the current members. */
  async nextEpoch(tx: EntityManager, groupId: string): Promise<number> {
    // (TypeORM answers a bare UPDATE with [rows, count]; a CTE answers with rows.)
    const [row] = (await tx.query('WITH bumped AS (UPDATE groups SET epoch = epoch + 1 WHERE id = $1 RETURNING epoch) SELECT epoch FROM bumped', [
      groupId,
    ])) as {epoch: number}[]
    await this.startEpoch(tx, groupId, row!.epoch)
    return row!.epoch
  }

  private async startEpoch(tx: EntityManager, groupId: string, epoch: number): Promise<void> {
    await tx.query(
      `INSERT INTO group_epochs (group_id, epoch, member_ids)
       SELECT $1, $2, coalesce(array_agg(user_id ORDER BY user_id), '{}') FROM group_members WHERE group_id = $1`,
      [groupId, epoch],
    )
  }

  async epoch(tx: EntityManager, groupId: string, epoch: number): Promise<EpochRow | undefined> {
    const [row] = (await tx.query(
      `SELECT epoch, member_ids::text[] AS "memberIds", keyed_by AS "keyedBy" FROM group_epochs WHERE group_id = $1 AND epoch = $2`,
      [groupId, epoch],
    )) as EpochRow[]
    return row
  }

  /**
   * An epoch as a send by `senderId` needs it: with the members who block the
   * sender (`blockedBy`, found by blocks_blocked_id_idx in the same statement).
   */
  async sendingEpoch(tx: EntityManager, groupId: string, epoch: number, senderId: string): Promise<(EpochRow & {blockedBy: string[]}) | undefined> {
    const [row] = (await tx.query(
      `SELECT ge.epoch, ge.member_ids::text[] AS "memberIds", ge.keyed_by AS "keyedBy",
              ARRAY(SELECT b.blocker_id::text FROM blocks b WHERE b.blocked_id = $3 AND b.blocker_id = ANY(ge.member_ids)) AS "blockedBy"
         FROM group_epochs ge WHERE ge.group_id = $1 AND ge.epoch = $2`,
      [groupId, epoch, senderId],
    )) as (EpochRow & {blockedBy: string[]})[]
    return row
  }

  async usernames(tx: EntityManager, userIds: string[]): Promise<Map<string, string>> {
    const rows = (await tx.query('SELECT id, username FROM users WHERE id = ANY($1::bigint[])', [userIds])) as {id: string; username: string}[]
    return new Map(rows.map((row) => [row.id, row.username]))
  }

  /** Stores one epoch's key set and who made it. */
  async storeKeys(tx: EntityManager, groupId: string, epoch: number, keyedBy: string, keys: {userId: string; wrappedKey: string}[]): Promise<void> {
    await tx.query(
      `INSERT INTO group_keys (group_id, epoch, user_id, wrapped_key)
       SELECT $1, $2, k.user_id, k.wrapped_key FROM unnest($3::bigint[], $4::text[]) AS k(user_id, wrapped_key)`,
      [groupId, epoch, keys.map((k) => k.userId), keys.map((k) => k.wrappedKey)],
    )
    await tx.query('UPDATE group_epochs SET keyed_by = $3 WHERE group_id = $1 AND epoch = $2', [groupId, epoch, keyedBy])
  }

  async wrappedKey(tx: EntityManager, groupId: string, epoch: number, userId: string): Promise<string | undefined> {
    const [row] = (await tx.query('SELECT wrapped_key AS "wrappedKey" FROM group_keys WHERE group_id = $1 AND epoch = $2 AND user_id = $3', [
      groupId,
      epoch,
      userId,
    ])) as {wrappedKey: string}[]
    return row?.wrappedKey
  }

  async listFor(tx: EntityManager, userId: string): Promise<GroupSummary[]> {
    return (await tx.query(
      `SELECT g.id, g.name, g.epoch, gm.role,
              (SELECT count(*)::int FROM group_members c WHERE c.group_id = g.id) AS members
         FROM group_members gm JOIN groups g ON g.id = gm.group_id
        WHERE gm.user_id = $1
        ORDER BY lower(g.name), g.id`,
      [userId],
    )) as GroupSummary[]
  }
}
