import {randomUUID} from 'node:crypto'

import type {DataSource, EntityManager} from 'typeorm'

import type {GroupRole} from '../../storage/entities/group.js'
import type {BlockRepository} from '../../storage/repositories/block.repository.js'
import type {GroupRepository, GroupRow, GroupSummary, InvitationRow, MemberRow} from '../../storage/repositories/group.repository.js'
import type {Appended, NewEvent} from '../../storage/repositories/event-stream.repository.js'
import type {SessionUser} from '../../storage/repositories/session.repository.js'
import {type AccountService, usernameKey} from './accounts.js'
import {GroupError, NotAcceptedError} from './errors.js'

/** Largest group, the creator and open invitations included. A send costs one event per member, in one transaction. */
export const MAX_GROUP_MEMBERS = 1000

/**
 * Counts an operation's real cost against the caller's rate limit once it is
 * known, before any of it is written: `events` is how many streams it appends
 * to. Throws (429) to refuse it. Given by the route; absent, nothing is counted.
 */
export type Charge = (events: number) => Promise<void>

/** Appends an event to each recipient's stream inside the caller's transaction (EventStreamRepository). */
export interface EventAppender {
  append(tx: EntityManager, recipientIds: string[], event: NewEvent): Promise<Appended[]>
}

/** Runs `work` in one database transaction: committed when it resolves, rolled back if it throws. */
export type Transact = <T>(work: (tx: EntityManager) => Promise<T>) => Promise<T>

export const groupNotFound = (id: string) => new GroupError('FC_GROUP_NOT_FOUND', `No group ${id}.`)
export const notGroupMember = () => new GroupError('FC_NOT_GROUP_MEMBER', 'You are not a member of this group.')
const adminRequired = () => new GroupError('FC_GROUP_ADMIN_REQUIRED', 'Only an admin of this group can do this.')
export const staleEpoch = (current: number) =>
  new GroupError('FC_GROUP_EPOCH_STALE', `The group is at epoch ${current}: fetch its key and try again.`, {extensions: {epoch: current}})
export const notInvited = () => new GroupError('FC_NOT_INVITED', 'You have no open invitation to this group.')
const groupTooLarge = () =>
  new GroupError('FC_GROUP_TOO_LARGE', `A group has at most ${MAX_GROUP_MEMBERS} members.`, {extensions: {limit: MAX_GROUP_MEMBERS}})

/**
 * Events that concern a whole epoch name at most this many members (and say
 * how many there are): one such event goes to every member, so listing them
 * all would store members² names per change.
 */
const LISTED_MEMBERS = 100
const listed = (names: string[]) => ({users: names.slice(0, LISTED_MEMBERS), members: names.length})

export interface GroupView {
  id: string
  name: string
  epoch: number
  keyedBy: string | null
  createdAt: string
  members: {username: string; role: GroupRole; fingerprint: string; joinedAt: string}[]
  /** Open invitations: not members, not in any epoch, until they join. */
  invited: {username: string; by: string; invitedAt: string}[]
}

/** An entry of `GET /v1/groups/invitations`. */
export interface InvitationView {
  group: string
  name: string
  by: string
  invitedAt: string
}

export interface GroupKeyView {
  group: string
  epoch: number
  keyedBy: string
  members: string[]
  key: string
}

/**
 * Groups, their members and key epochs. Every membership change runs in one
 * transaction holding the group row FOR UPDATE: it changes the members,
 * starts the next epoch with the new member set and appends the events, so
 * two admins acting at once are serialised into two consecutive epochs and
 * a send (which holds the row FOR SHARE) is always checked against, and
 * delivered to, exactly the member set of the epoch it was encrypted for.
 */
export class GroupService {
  constructor(
    private readonly db: DataSource,
    private readonly groups: GroupRepository,
    private readonly accounts: AccountService,
    private readonly delivery: {announce(userIds: string[]): void},
    private readonly blocks: BlockRepository,
    private readonly stream: EventAppender,
  ) {}

  async create(creator: SessionUser, name: string, memberNames: string[], charge?: Charge): Promise<{id: string; name: string; epoch: number}> {
    const others = (await this.accounts.findMany(memberNames)).filter((user) => user.id !== creator.userId)
    if (others.length + 1 > MAX_GROUP_MEMBERS) throw groupTooLarge()
    const id = randomUUID()
    const inviteeIds = others.map((user) => user.id)
    // Making a group with someone invites them to it: not if they block you.
    const refusing = new Set(await this.blocks.blockersAmong(this.db.manager, creator.userId, inviteeIds))
    if (refusing.size > 0) throw new NotAcceptedError(others.filter((user) => refusing.has(user.id)).map((user) => user.username))
    await charge?.(inviteeIds.length + 1)
    await this.db.transaction(async (tx) => {
      // The creator is the only member of epoch 1; the others are invited, and each join starts an epoch.
      await this.groups.insert(tx, {id, name, createdBy: creator.userId}, [{userId: creator.userId, role: 'admin' as GroupRole}], inviteeIds)
      await this.stream.append(tx, [creator.userId], {
        type: 'group.created',
        payload: {group: id, name, epoch: 1, by: creator.username, ...listed([creator.username])},
      })
      if (others.length > 0) await this.announceInvitations(tx, {id, name, epoch: 1}, creator, [creator.userId], others)
    })
    this.delivery.announce([creator.userId, ...inviteeIds])
    return {id, name, epoch: 1}
  }

  /** The groups I joined (invitations are listed by `invitations`). */
  async list(user: SessionUser): Promise<GroupSummary[]> {
    return this.groups.listFor(this.db.manager, user.userId)
  }

  /** My open invitations, oldest first. */
  async invitations(user: SessionUser): Promise<InvitationView[]> {
    const rows = await this.groups.invitations(this.db.manager, {userId: user.userId})
    const inviters = await this.groups.usernames(this.db.manager, [...new Set(rows.map((row) => row.invitedBy))])
    return rows.map((row) => ({group: row.groupId, name: row.name, by: inviters.get(row.invitedBy)!, invitedAt: new Date(row.invitedAt).toISOString()}))
  }

  /**
   * Accepts my invitation: I become a member, and the group starts a new
   * epoch with me in it, exactly as an admin's add used to (earlier epochs
   * stay closed to me). As for every change, whoever made it keys the new
   * epoch, here the joiner (`fastchat group join` does; else any member's
   * next send). No `group.rekey_needed`: in a large group it would set every
   * listening member's client wrapping a key for everyone at each join.
   */
  async join(user: SessionUser, groupId: string, charge?: Charge): Promise<{epoch: number}> {
    return this.change(groupId, charge, async (tx, group, members) => {
      if (members.some((member) => member.userId === user.userId)) {
        throw new GroupError('FC_ALREADY_GROUP_MEMBER', 'You are already a member of this group.')
      }
      if (!(await this.groups.uninvite(tx, groupId, user.userId))) throw notInvited()
      if (members.length + 1 > MAX_GROUP_MEMBERS) throw groupTooLarge()
      // Everyone else left meanwhile: a group never lacks an admin while it has members.
      await this.groups.addMember(tx, groupId, user.userId, members.length === 0 ? 'admin' : 'member')
      const epoch = await this.groups.nextEpoch(tx, groupId)
      const recipients = [...members.map((member) => member.userId), user.userId]
      await this.stream.append(tx, recipients, {
        type: 'group.member_added',
        payload: {group: groupId, name: group.name, epoch, by: user.username, users: [user.username]},
      })
      return {result: {epoch}, notify: recipients}
    })
  }

  /**
   * Refuses my invitation. Nothing is announced: the members see only that
   * the invitation is gone from the group's view (docs/api.md).
   */
  async decline(user: SessionUser, groupId: string): Promise<void> {
    await this.db.transaction(async (tx) => {
      const group = await this.groups.lock(tx, groupId, 'update')
      if (!group) throw groupNotFound(groupId)
      if (!(await this.groups.uninvite(tx, groupId, user.userId))) throw notInvited()
    })
  }

  /** `invitee` blocked `inviterId`: their open invitations from them end, silently. */
  async endInvitationsFrom(inviteeId: string, inviterId: string): Promise<number> {
    return this.groups.endInvitationsFrom(this.db.manager, inviteeId, inviterId)
  }

  async get(user: SessionUser, groupId: string): Promise<GroupView> {
    return this.db.transaction('REPEATABLE READ', async (tx) => {
      const group = await this.groups.find(tx, groupId)
      if (!group) throw groupNotFound(groupId)
      const members = await this.groups.members(tx, groupId)
      if (!members.some((member) => member.userId === user.userId)) {
        // An invitee learns the name and inviter from GET /v1/groups/invitations, nothing more until they join.
        if (await this.groups.invitation(tx, groupId, user.userId)) {
          throw new GroupError('FC_NOT_GROUP_MEMBER', 'You are invited to this group but have not joined it.', {extensions: {invited: true}})
        }
        throw notGroupMember()
      }
      const invitations = await this.groups.invitations(tx, {groupId})
      const epoch = await this.groups.epoch(tx, groupId, group.epoch)
      const names = await this.groups.usernames(tx, [...(epoch?.keyedBy ? [epoch.keyedBy] : []), ...invitations.map((row) => row.invitedBy)])
      const keyedBy = epoch?.keyedBy ? names.get(epoch.keyedBy) ?? null : null
      return {
        id: group.id,
        name: group.name,
        epoch: group.epoch,
        keyedBy,
        createdAt: new Date(group.createdAt).toISOString(),
        members: members.map((member) => ({
          username: member.username,
          role: member.role,
          fingerprint: member.fingerprint,
          joinedAt: new Date(member.joinedAt).toISOString(),
        })),
        invited: invitations.map((row) => ({username: row.username, by: names.get(row.invitedBy)!, invitedAt: new Date(row.invitedAt).toISOString()})),
      }
    })
  }

  /**
   * Invites a user (admins only). The group and its epoch do not change: the
   * invitee is no member until they join (`join`), which starts the epoch.
   */
  async addMember(actor: SessionUser, groupId: string, username: string, charge?: Charge): Promise<{epoch: number; invited: string}> {
    const target = await this.accounts.find(username)
    return this.change(groupId, charge, async (tx, group, members) => {
      requireAdmin(members, actor)
      if (members.some((member) => member.userId === target.id)) {
        throw new GroupError('FC_ALREADY_GROUP_MEMBER', `${target.username} is already a member of this group.`)
      }
      if (await this.groups.invitation(tx, groupId, target.id)) {
        throw new GroupError('FC_ALREADY_INVITED', `${target.username} is already invited to this group.`)
      }
      if ((await this.blocks.blockersAmong(tx, actor.userId, [target.id])).length > 0) throw new NotAcceptedError()
      if (members.length + (await this.groups.invitationCount(tx, groupId)) + 1 > MAX_GROUP_MEMBERS) throw groupTooLarge()
      await this.groups.invite(tx, groupId, [target.id], actor.userId)
      const memberIds = members.map((member) => member.userId)
      await this.announceInvitations(tx, group, actor, memberIds, [target])
      return {result: {epoch: group.epoch, invited: target.username}, notify: [...memberIds, target.id]}
    })
  }

  /**
   * `group.invited` to each invitee (the group's name and who invites: not
   * who else is in it), and `group.member_invited` to the members.
   */
  private async announceInvitations(
    tx: EntityManager,
    group: {id: string; name: string; epoch: number},
    by: SessionUser,
    memberIds: string[],
    invitees: {id: string; username: string}[],
  ): Promise<void> {
    const common = {group: group.id, name: group.name, epoch: group.epoch, by: by.username}
    await this.stream.append(tx, invitees.map((user) => user.id), {type: 'group.invited', payload: {...common, users: []}})
    await this.stream.append(tx, memberIds, {type: 'group.member_invited', payload: {...common, ...listed(invitees.map((user) => user.username))}})
  }

  /** An admin removes a member, or a member leaves (`username` is themselves). */
  async removeMember(actor: SessionUser, groupId: string, username: string, charge?: Charge): Promise<{epoch: number}> {
    const target = await this.accounts.find(username)
    return this.change(groupId, charge, async (tx, group, members) => {
      const leaving = target.id === actor.userId
      const actorMember = members.find((member) => member.userId === actor.userId)
      const targetMember = members.find((member) => member.userId === target.id)
      // An invitee removed (by an admin, or by themselves: a decline) is no member: no new epoch, nothing announced.
      if (!targetMember && (leaving || actorMember?.role === 'admin') && (await this.groups.uninvite(tx, groupId, target.id))) {
        return {result: {epoch: group.epoch}, notify: []}
      }
      if (!actorMember) throw notGroupMember()
      if (!leaving && actorMember.role !== 'admin') throw adminRequired()
      if (!targetMember) throw new GroupError('FC_GROUP_MEMBER_NOT_FOUND', `${target.username} is not a member of this group.`)

      await this.groups.removeMember(tx, groupId, target.id)
      const remaining = members.filter((member) => member.userId !== target.id)
      const notify = [...members.map((member) => member.userId)]
      const epoch = await this.groups.nextEpoch(tx, groupId)
      await this.stream.append(tx, notify, {
        type: 'group.member_removed',
        payload: {group: groupId, name: group.name, epoch, by: actor.username, users: [target.username], ...(leaving ? {left: true} : {})},
      })
      // A group never loses its last admin while it has members.
      const heir = remaining.length > 0 && !remaining.some((member) => member.role === 'admin') ? remaining[0]! : undefined
      if (heir) {
        await this.groups.setRole(tx, groupId, heir.userId, 'admin')
        await this.stream.append(tx, remaining.map((member) => member.userId), {
          type: 'group.role_changed',
          payload: {group: groupId, name: group.name, epoch, by: actor.username, users: [heir.username], role: 'admin'},
        })
      }
      // Whoever made the change keys the new epoch, unless they are no longer in it.
      if (!remaining.some((member) => member.userId === actor.userId) && remaining.length > 0) {
        await this.stream.append(tx, remaining.map((member) => member.userId), {
          type: 'group.rekey_needed',
          payload: {group: groupId, name: group.name, epoch, by: actor.username, ...listed(remaining.map((member) => member.username))},
        })
      }
      return {result: {epoch}, notify}
    })
  }

  async setRole(actor: SessionUser, groupId: string, username: string, role: GroupRole, charge?: Charge): Promise<{username: string; role: GroupRole}> {
    const target = await this.accounts.find(username)
    return this.change(groupId, charge, async (tx, group, members) => {
      requireAdmin(members, actor)
      const targetMember = members.find((member) => member.userId === target.id)
      if (!targetMember) throw new GroupError('FC_GROUP_MEMBER_NOT_FOUND', `${target.username} is not a member of this group.`)
      if (targetMember.role === role) return {result: {username: target.username, role}, notify: []}
      if (role === 'member' && members.filter((member) => member.role === 'admin').length === 1) {
        throw new GroupError('FC_LAST_ADMIN', 'A group keeps at least one admin: promote someone else first.')
      }
      await this.groups.setRole(tx, groupId, target.id, role)
      const recipients = members.map((member) => member.userId)
      await this.stream.append(tx, recipients, {
        type: 'group.role_changed',
        payload: {group: groupId, name: group.name, epoch: group.epoch, by: actor.username, users: [target.username], role},
      })
      return {result: {username: target.username, role}, notify: recipients}
    })
  }

  /**
   * Starts a new epoch with the same members (admins only). The way out when
   * an epoch's key set cannot be used (a member uploaded keys the others
   * cannot open or verify: the first complete set wins and cannot be
   * replaced), or when an admin wants a fresh key. The members are asked to
   * key it (`group.rekey_needed`); the admin's own client usually does.
   */
  async rekey(actor: SessionUser, groupId: string, charge?: Charge): Promise<{epoch: number}> {
    return this.change(groupId, charge, async (tx, group, members) => {
      requireAdmin(members, actor)
      const epoch = await this.groups.nextEpoch(tx, groupId)
      const recipients = members.map((member) => member.userId)
      await this.stream.append(tx, recipients, {
        type: 'group.rekey_needed',
        payload: {group: groupId, name: group.name, epoch, by: actor.username, ...listed(members.map((member) => member.username))},
      })
      return {result: {epoch}, notify: recipients}
    })
  }

  /**
   * Accepts the first complete key set of the current epoch: one wrapped key
   * for exactly each of its members, uploaded by one of them.
   */
  async putKeys(actor: SessionUser, groupId: string, epoch: number, keys: Record<string, string>, charge?: Charge): Promise<void> {
    await this.change(groupId, charge, async (tx, group, members) => {
      if (!members.some((member) => member.userId === actor.userId)) throw notGroupMember()
      if (epoch !== group.epoch) throw staleEpoch(group.epoch)
      const current = await this.groups.epoch(tx, groupId, epoch)
      if (current?.keyedBy) throw new GroupError('FC_GROUP_ALREADY_KEYED', `Epoch ${epoch} already has its keys: fetch yours.`)
      const byKey = new Map(members.map((member) => [usernameKey(member.username), member]))
      const given = new Map(Object.entries(keys).map(([name, wrapped]) => [usernameKey(name), {name, wrapped}]))
      const missing = members.filter((member) => !given.has(usernameKey(member.username))).map((member) => member.username)
      const unexpected = [...given.values()].filter((entry) => !byKey.has(usernameKey(entry.name))).map((entry) => entry.name)
      if (missing.length > 0 || unexpected.length > 0 || given.size !== Object.keys(keys).length) {
        throw new GroupError('FC_GROUP_KEYS_MISMATCH', `The keys must cover exactly the ${members.length} members of epoch ${epoch}.`, {
          extensions: {missing, unexpected},
        })
      }
      await this.groups.storeKeys(
        tx,
        groupId,
        epoch,
        actor.userId,
        members.map((member) => ({userId: member.userId, wrappedKey: given.get(usernameKey(member.username))!.wrapped})),
      )
      const recipients = members.map((member) => member.userId)
      await this.stream.append(tx, recipients, {
        type: 'group.key',
        payload: {group: groupId, name: group.name, epoch, by: actor.username, ...listed(members.map((member) => member.username))},
      })
      return {result: undefined, notify: recipients}
    })
  }

  /** My wrapped key of one epoch: only for members of that epoch. */
  async getKey(user: SessionUser, groupId: string, epoch: number): Promise<GroupKeyView> {
    return this.db.transaction('REPEATABLE READ', async (tx) => {
      const group = await this.groups.find(tx, groupId)
      if (!group) throw groupNotFound(groupId)
      const row = await this.groups.epoch(tx, groupId, epoch)
      if (!row) {
        // Only members may learn which epochs exist.
        if (!(await this.groups.role(tx, groupId, user.userId))) throw notGroupMember()
        throw new GroupError('FC_GROUP_KEY_NOT_FOUND', `Epoch ${epoch} does not exist.`)
      }
      if (!row.memberIds.includes(user.userId)) throw new GroupError('FC_NOT_GROUP_MEMBER', `You were not a member of this group in epoch ${epoch}.`)
      const key = row.keyedBy ? await this.groups.wrappedKey(tx, groupId, epoch, user.userId) : undefined
      if (!row.keyedBy || !key) throw new GroupError('FC_GROUP_KEY_NOT_FOUND', `Epoch ${epoch} has no keys yet.`)
      const names = await this.groups.usernames(tx, [...row.memberIds, row.keyedBy])
      return {
        group: groupId,
        epoch,
        keyedBy: names.get(row.keyedBy)!,
        members: row.memberIds.map((id) => names.get(id)!).sort(),
        key,
      }
    })
  }

  /**
   * Checks a group send against the epoch it was encrypted for, holding the
   * group row FOR SHARE until the caller's transaction commits, and returns
   * who receives it: the epoch's members but the sender and those who block
   * the sender (the sender is not told: the others do get the message).
   */
  async recipientsOfSend(tx: EntityManager, sender: SessionUser, groupId: string, epoch: number): Promise<string[]> {
    const group = await this.groups.lock(tx, groupId, 'share')
    if (!group) throw groupNotFound(groupId)
    const current = (await this.groups.sendingEpoch(tx, groupId, group.epoch, sender.userId))!
    if (!current.memberIds.includes(sender.userId)) throw notGroupMember()
    if (epoch !== group.epoch) throw staleEpoch(group.epoch)
    if (!current.keyedBy) {
      throw new GroupError('FC_GROUP_NOT_KEYED', `Epoch ${group.epoch} has no keys yet: upload them, then send again.`, {extensions: {epoch: group.epoch}})
    }
    const skipped = new Set([sender.userId, ...current.blockedBy])
    return current.memberIds.filter((id) => !skipped.has(id))
  }

  /** Members only: 404 for no group, 403 for a non-member. */
  async requireMember(user: SessionUser, groupId: string): Promise<void> {
    const group = await this.groups.find(this.db.manager, groupId)
    if (!group) throw groupNotFound(groupId)
    if (!(await this.groups.role(this.db.manager, groupId, user.userId))) throw notGroupMember()
  }

  /**
   * Runs one membership change under the group's row lock, then wakes the
   * polls it concerns. It notifies about every member, so that is its cost.
   */
  private async change<T>(
    groupId: string,
    charge: Charge | undefined,
    run: (tx: EntityManager, group: GroupRow, members: MemberRow[]) => Promise<{result: T; notify: string[]}>,
  ): Promise<T> {
    const {result, notify} = await this.db.transaction(async (tx) => {
      const group = await this.groups.lock(tx, groupId, 'update')
      if (!group) throw groupNotFound(groupId)
      const members = await this.groups.members(tx, groupId)
      await charge?.(members.length)
      return run(tx, group, members)
    })
    if (notify.length > 0) this.delivery.announce(notify)
    return result
  }
}

function requireAdmin(members: MemberRow[], actor: SessionUser): void {
  const member = members.find((candidate) => candidate.userId === actor.userId)
  if (!member) throw notGroupMember()
  if (member.role !== 'admin') throw adminRequired()
}
