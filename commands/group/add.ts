import {Args} from '@oclif/core'

import {BaseCommand} from '../_lib/base-command.js'
import {type GroupState, groupState, userArg} from '../../client/group-changes.js'
import {singleLine} from '../_lib/display.js'
import {groupName} from '../_lib/format.js'

export type GroupAddResult = GroupState & {invitee: string; keyedHere: boolean}

export default class GroupAdd extends BaseCommand<typeof GroupAdd> {
  static override summary = 'Invite a user to a group (admins only).'
  static override description =
    'They become a member only when they accept (`fastchat group join`): then a new key is made that they can read, and earlier ones stay closed to them. ' +
    'Until then they receive nothing of the group. `fastchat group remove` withdraws the invitation.'
  static override examples = ['<%= config.bin %> group add friends dave']

  static override args = {
    group: Args.string({description: 'The group: its id, or a name unique among your groups.', required: true}),
    user: Args.string({description: 'Who to add.', required: true}),
  }

  async run(): Promise<GroupAddResult> {
    const client = await this.daemonOrClient()
    const user = userArg(this.args.user)
    const keyed = await client.addMember(this.args.group, user)
    const invitee = keyed.group.invited.find((i) => i.username.toLowerCase() === user.toLowerCase())?.username ?? user
    this.log(`Invited ${singleLine(invitee)} to ${groupName(keyed.group)}; they become a member when they join.`)
    return {...groupState(keyed.group), invitee, keyedHere: keyed.keyedHere}
  }
}
