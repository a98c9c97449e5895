import {Args} from '@oclif/core'

import {BaseCommand} from '../_lib/base-command.js'
import {Directory} from '../../client/directory.js'
import {userArg} from '../../client/group-changes.js'
import {type GroupRef} from '../../client/group-targets.js'
import {describeGroup} from '../_lib/format.js'

export interface GroupPromoteResult {
  group: GroupRef
  username: string
  role: string
}

export default class GroupPromote extends BaseCommand<typeof GroupPromote> {
  static override summary = 'Make a member an admin of a group (admins only).'
  static override description = 'Admins add and remove members. This is not a membership change: the key stays the same.'
  static override examples = ['<%= config.bin %> group promote friends bob']

  static override args = {
    group: Args.string({description: 'The group: its id, or a name unique among your groups.', required: true}),
    user: Args.string({description: 'The member to make an admin.', required: true}),
  }

  async run(): Promise<GroupPromoteResult> {
    const directory = new Directory(await this.openSession())
    const group = await directory.groups.resolve(this.args.group)
    const changed = await directory.session.withFailover((api) => api.setGroupRole(group.id, userArg(this.args.user), 'admin'))
    this.log(`${changed.username} is now an admin of ${describeGroup(group)}.`)
    return {group, username: changed.username, role: changed.role}
  }
}
