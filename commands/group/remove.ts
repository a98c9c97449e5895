import {Args} from '@oclif/core'

import {BaseCommand} from '../_lib/base-command.js'
import {Directory} from '../../client/directory.js'
import {singleLine} from '../_lib/display.js'
import {changeMembership, type GroupState, groupState, keyAfterChange, userArg} from '../../client/group-changes.js'
import GroupLeave, {type GroupLeaveResult} from './leave.js'
import {describeGroup, firstUseNote, groupName} from '../_lib/format.js'

export type GroupRemoveResult = GroupState & {removed: string; keyedHere: boolean}

export default class GroupRemove extends BaseCommand<typeof GroupRemove> {
  static override summary = 'Remove a member from a group (admins only); a new key is made that they cannot read.'
  static override description = 'Removing yourself is the same as `fastchat group leave`.'
  static override examples = ['<%= config.bin %> group remove friends carol']

  static override args = {
    group: Args.string({description: 'The group: its id, or a name unique among your groups.', required: true}),
    user: Args.string({description: 'Who to remove.', required: true}),
  }

  async run(): Promise<GroupRemoveResult | GroupLeaveResult> {
    const session = await this.openSession()
    const user = userArg(this.args.user)
    if (session.isMe(user)) return GroupLeave.leave(this, session, this.args.group)
    const directory = new Directory(session)
    const group = await directory.groups.resolve(this.args.group)
    await changeMembership(session, (api) => api.removeGroupMember(group.id, user), (error) => error.code === 'FC_GROUP_MEMBER_NOT_FOUND')
    const keyed = await keyAfterChange(directory, group.id, `Removed ${user} from ${describeGroup(group)}`)
    for (const key of keyed.pinned) this.note(firstUseNote(key))
    this.log(`Removed ${singleLine(user)} from ${groupName(keyed.group)}; key epoch ${keyed.group.epoch} made by ${keyed.group.keyedBy} for ${keyed.group.members.length} members.`)
    return {...groupState(keyed.group), removed: user, keyedHere: keyed.keyedHere}
  }
}
