import {Args} from '@oclif/core'

import {BaseCommand} from '../_lib/base-command.js'
import type {GroupRef} from '../../client/group-targets.js'
import {describeGroup} from '../_lib/format.js'

export interface GroupDeclineResult {
  group: GroupRef
  declined: true
}

export default class GroupDecline extends BaseCommand<typeof GroupDecline> {
  static override summary = 'Decline an invitation to a group.'
  static override description = 'The invitation ends; nobody is told, the members only see it gone from `fastchat group show`. You can be invited again.'
  static override examples = ['<%= config.bin %> group decline friends']

  static override args = {
    group: Args.string({description: 'The group: its id, or a name unique among your invitations.', required: true}),
  }

  async run(): Promise<GroupDeclineResult> {
    const group = await (await this.daemonOrClient()).declineGroup(this.args.group)
    this.log(`You declined the invitation to ${describeGroup(group)}.`)
    return {group, declined: true}
  }
}
