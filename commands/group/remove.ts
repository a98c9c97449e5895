import {Args} from '@oclif/core'

import {BaseCommand} from '../_lib/base-command.js'
import {type GroupState, groupState, userArg} from '../../client/group-changes.js'
import {singleLine} from '../_lib/display.js'
import {groupName} from '../_lib/format.js'
import GroupLeave, {type GroupLeaveResult} from './leave.js'

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
    const client = await this.daemonOrClient()
    const user = userArg(this.args.user)
    if (user.toLowerCase() === client.username.toLowerCase()) return GroupLeave.leave(this, client, this.args.group)
    const keyed = await client.removeMember(this.args.group, user)
    this.log(`Removed ${singleLine(user)} from ${groupName(keyed.group)}; key epoch ${keyed.group.epoch} made by ${keyed.group.keyedBy} for ${keyed.group.members.length} members.`)
    return {...groupState(keyed.group), removed: user, keyedHere: keyed.keyedHere}
  }
}
