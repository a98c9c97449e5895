import {Args} from '@oclif/core'

import {BaseCommand} from '../_lib/base-command.js'
import {type GroupState, groupState, userArg} from '../../client/group-changes.js'
import {groupName} from '../_lib/format.js'

export type GroupAddResult = GroupState & {added: string; keyedHere: boolean}

export default class GroupAdd extends BaseCommand<typeof GroupAdd> {
  static override summary = 'Add a member to a group (admins only); a new key is made that the new member can read, and earlier ones stay closed to them.'
  static override examples = ['<%= config.bin %> group add friends dave']

  static override args = {
    group: Args.string({description: 'The group: its id, or a name unique among your groups.', required: true}),
    user: Args.string({description: 'Who to add.', required: true}),
  }

  async run(): Promise<GroupAddResult> {
    const client = await this.daemonOrClient()
    const user = userArg(this.args.user)
    const keyed = await client.addMember(this.args.group, user)
    const added = keyed.group.members.find((m) => m.username.toLowerCase() === user.toLowerCase())?.username ?? user
    this.log(`Added ${added} to ${groupName(keyed.group)}; key epoch ${keyed.group.epoch} made by ${keyed.group.keyedBy} for ${keyed.group.members.length} members.`)
    return {...groupState(keyed.group), added, keyedHere: keyed.keyedHere}
  }
}
