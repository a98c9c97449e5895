import {Args} from '@oclif/core'

import {BaseCommand} from '../_lib/base-command.js'
import {Directory} from '../../client/directory.js'
import {type GroupState, groupState, keyAfterChange} from '../../client/group-changes.js'
import {describeGroup, firstUseNote, groupName} from '../_lib/format.js'

export type GroupRekeyResult = GroupState & {keyedHere: boolean}

export default class GroupRekey extends BaseCommand<typeof GroupRekey> {
  static override summary = 'Start a new key epoch with the same members, and make its key (admins only).'
  static override description =
    "For when messages of a group cannot be read because its current key is unusable (a member's client uploaded keys the others " +
    'cannot open or verify), or to change the key for any other reason. Messages already sent keep their old key.'

  static override examples = ['<%= config.bin %> group rekey friends']

  static override args = {
    group: Args.string({description: 'The group: its id, or a name unique among your groups.', required: true}),
  }

  async run(): Promise<GroupRekeyResult> {
    const directory = new Directory(await this.openSession())
    const group = await directory.groups.resolve(this.args.group)
    // Not retried on another server: a repeat would start yet another epoch, harmless but pointless.
    await directory.session.api.newGroupEpoch(group.id)
    const keyed = await keyAfterChange(directory, group.id, `Started a new epoch of ${describeGroup(group)}`)
    for (const key of keyed.pinned) this.note(firstUseNote(key))
    this.log(`New key epoch ${keyed.group.epoch} of ${groupName(keyed.group)}, made by ${keyed.group.keyedBy} for ${keyed.group.members.length} members.`)
    return {...groupState(keyed.group), keyedHere: keyed.keyedHere}
  }
}
