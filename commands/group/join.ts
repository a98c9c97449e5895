import {Args} from '@oclif/core'

import {BaseCommand} from '../_lib/base-command.js'
import {type GroupState, groupState} from '../../client/group-changes.js'
import {groupName} from '../_lib/format.js'

export type GroupJoinResult = GroupState & {joined: true; keyedHere: boolean}

export default class GroupJoin extends BaseCommand<typeof GroupJoin> {
  static override summary = 'Join a group you are invited to.'
  static override description =
    "You become a member, and a new key is made (by this client) that you and the other members can read: you receive the group's messages from now on, " +
    'never earlier ones.'

  static override examples = ['<%= config.bin %> group join friends', '<%= config.bin %> group join 9d2c0e4e-... --json']

  static override args = {
    group: Args.string({description: 'The group: its id, or a name unique among your invitations.', required: true}),
  }

  async run(): Promise<GroupJoinResult> {
    const keyed = await (await this.daemonOrClient()).joinGroup(this.args.group)
    const members = keyed.group.members.length
    this.log(`You joined ${groupName(keyed.group)} (${keyed.group.id}); key epoch ${keyed.group.epoch} made by ${keyed.group.keyedBy} for ${members} member${members === 1 ? '' : 's'}.`)
    return {...groupState(keyed.group), joined: true, keyedHere: keyed.keyedHere}
  }
}
