import {BaseCommand} from '../_lib/base-command.js'
import type {GroupInvitation} from '../../client/api-client.js'
import {singleLine} from '../_lib/display.js'

export interface GroupInvitationsResult {
  invitations: GroupInvitation[]
}

export default class GroupInvitations extends BaseCommand<typeof GroupInvitations> {
  static override summary = 'List the groups you are invited to: name, id, who invited you and when.'
  static override description = 'You are no member of a group, and receive none of its messages, until you join it (`fastchat group join`).'
  static override examples = ['<%= config.bin %> group invitations', '<%= config.bin %> group invitations --json']

  async run(): Promise<GroupInvitationsResult> {
    const invitations = await (await this.daemonOrClient()).invitations()
    const width = Math.max(0, ...invitations.map((i) => singleLine(i.name).length))
    for (const invitation of invitations) {
      this.log(`${singleLine(invitation.name).padEnd(width)}  ${invitation.group}  invited by ${singleLine(invitation.by)} at ${singleLine(invitation.invitedAt)}`)
    }
    if (invitations.length === 0) this.log('You have no open invitation.')
    else this.log('`fastchat group join <group>` joins one, `fastchat group decline <group>` refuses it.')
    return {invitations}
  }
}
