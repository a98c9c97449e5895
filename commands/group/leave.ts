import {Args} from '@oclif/core'

import {BaseCommand} from '../_lib/base-command.js'
import type {FastChatClient} from '../../client/fastchat-client.js'
import type {GroupRef} from '../../client/group-targets.js'
import {describeGroup} from '../_lib/format.js'

export interface GroupLeaveResult {
  group: GroupRef
  left: true
}

export default class GroupLeave extends BaseCommand<typeof GroupLeave> {
  static override summary = 'Leave a group.'
  static override description =
    "You stop receiving the group's messages. The remaining members' clients make a new key you cannot read; " +
    'the last admin to leave hands the role to the longest-standing member, and the last member to leave deletes the group.'

  static override examples = ['<%= config.bin %> group leave friends']

  static override args = {
    group: Args.string({description: 'The group: its id, or a name unique among your groups.', required: true}),
  }

  /** Shared with `group remove <group> <yourself>`. */
  static async leave(command: {log(line: string): void}, client: Pick<FastChatClient, 'leaveGroup'>, text: string): Promise<GroupLeaveResult> {
    const group = await client.leaveGroup(text)
    command.log(`You left ${describeGroup(group)}.`)
    return {group, left: true}
  }

  async run(): Promise<GroupLeaveResult> {
    return GroupLeave.leave(this, await this.daemonOrClient(), this.args.group)
  }
}
