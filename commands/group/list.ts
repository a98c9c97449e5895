import {BaseCommand} from '../_lib/base-command.js'
import type {GroupSummary} from '../../client/api-client.js'
import {singleLine} from '../_lib/display.js'
import {GroupDirectory} from '../../client/group-targets.js'

export interface GroupListResult {
  groups: GroupSummary[]
}

export default class GroupList extends BaseCommand<typeof GroupList> {
  static override summary = 'List your groups: name, id, your role, members and current key epoch.'
  static override examples = ['<%= config.bin %> group list', '<%= config.bin %> group list --json']

  async run(): Promise<GroupListResult> {
    const groups = await new GroupDirectory(await this.openSession()).mine()
    const width = Math.max(0, ...groups.map((g) => singleLine(g.name).length))
    for (const group of groups) {
      const members = `${group.members} member${group.members === 1 ? '' : 's'}`
      this.log(`${singleLine(group.name).padEnd(width)}  ${group.id}  ${group.role.padEnd(6)}  ${members}, key epoch ${group.epoch}`)
    }
    if (groups.length === 0) this.log('You are in no group yet. `fastchat group create <name> --member <user>` makes one.')
    return {groups}
  }
}
