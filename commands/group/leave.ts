import {Args} from '@oclif/core'

import {BaseCommand} from '../_lib/base-command.js'
import {changeMembership} from '../../client/group-changes.js'
import {GroupDirectory, type GroupRef} from '../../client/group-targets.js'
import type {ChatSession} from '../../client/session.js'
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
  static async leave(command: {log(line: string): void}, session: ChatSession, text: string): Promise<GroupLeaveResult> {
    const group = await new GroupDirectory(session).resolve(text)
    // A retry after a lost answer finds us gone (or the group deleted, if we were the last).
    const gone = (code: string) => code === 'FC_NOT_GROUP_MEMBER' || code === 'FC_GROUP_NOT_FOUND' || code === 'FC_GROUP_MEMBER_NOT_FOUND'
    await changeMembership(session, (api) => api.removeGroupMember(group.id, session.username), (error) => gone(error.code))
    command.log(`You left ${describeGroup(group)}.`)
    return {group, left: true}
  }

  async run(): Promise<GroupLeaveResult> {
    return GroupLeave.leave(this, await this.openSession(), this.args.group)
  }
}
