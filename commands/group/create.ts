import {Args, Flags} from '@oclif/core'

import {BaseCommand} from '../_lib/base-command.js'
import {type GroupState, groupState} from '../../client/group-changes.js'
import {singleLine} from '../_lib/display.js'
import {groupName} from '../_lib/format.js'

export type GroupCreateResult = GroupState & {keyedHere: boolean}

export default class GroupCreate extends BaseCommand<typeof GroupCreate> {
  static override summary = 'Create a group with you as its admin, and make its first key.'
  static override description =
    "The group's key is made on this machine and sent wrapped to each member's pinned key (pinned now for members you never wrote to: " +
    'compare their fingerprints with `fastchat keys verify`). Names need not be unique; a name shared by two of your groups must be replaced by the id.'

  static override examples = ['<%= config.bin %> group create friends --member bob --member carol']

  static override args = {
    name: Args.string({description: 'The group name (1-64 characters).', required: true}),
  }

  static override flags = {
    member: Flags.string({char: 'm', summary: 'A user to invite (repeat for more); they become members when they join.', multiple: true, helpValue: 'USER'}),
  }

  async run(): Promise<GroupCreateResult> {
    const client = await this.daemonOrClient()
    const keyed = await client.createGroup(this.args.name, this.flags.member ?? [])
    const invited = keyed.group.invited.map((i) => singleLine(i.username))
    this.log(`Created ${groupName(keyed.group)} (${keyed.group.id})${invited.length > 0 ? `, invited ${invited.join(', ')} (members once they join)` : ''}; key epoch ${keyed.group.epoch} made by ${keyed.group.keyedBy}.`)
    return {...groupState(keyed.group), keyedHere: keyed.keyedHere}
  }
}
