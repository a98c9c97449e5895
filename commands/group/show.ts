import {Args} from '@oclif/core'

import {formatFingerprint} from '../../crypto/index.js'
import type {GroupRole} from '../../client/api-client.js'
import {BaseCommand} from '../_lib/base-command.js'
import {Directory} from '../../client/directory.js'
import {singleLine} from '../_lib/display.js'
import {GroupKeyUnavailable} from '../../client/group-keys.js'
import {contactOf} from '../../client/profile-store.js'

/**
 * How this client knows a member's key: `you`; `verified` (pinned and compared
 * with `keys verify --fingerprint`); `pinned` (trusted on first use);
 * `changed` (the server now claims another key than the pinned one);
 * `not pinned` (never used: the fingerprint shown is the server's claim).
 */
export type MemberTrust = 'you' | 'verified' | 'pinned' | 'changed' | 'not pinned'

export interface GroupShowResult {
  id: string
  name: string
  createdAt: string
  epoch: number
  keyedBy: string | null
  /** The current epoch's key as this client opened it; null if it has none or cannot be opened (`keyProblem` says why). */
  key: {epoch: number; id: string} | null
  keyProblem?: string
  members: {username: string; role: GroupRole; joinedAt: string; fingerprint: string; trust: MemberTrust}[]
  /** Invited, not joined: no key is made for them and they receive nothing. */
  invited: {username: string; by: string; invitedAt: string}[]
}

export default class GroupShow extends BaseCommand<typeof GroupShow> {
  static override summary = "Show a group: members and roles, the current key epoch and who made its key, and how far you trust each member's key."
  static override description =
    "Each member's fingerprint is the one pinned in this profile when there is one (else the server's claim), marked verified, pinned, " +
    "CHANGED or not pinned. The key id is a short hash of the epoch's key, shown only if this client can open it: members who see the same id share the key."

  static override examples = ['<%= config.bin %> group show friends', '<%= config.bin %> group show 9d2c0e4e-... --json']

  static override args = {
    group: Args.string({description: 'The group: its id, or a name unique among your groups.', required: true}),
  }

  async run(): Promise<GroupShowResult> {
    const session = await this.openSession()
    const directory = new Directory(session)
    const ref = await directory.groups.resolve(this.args.group)
    const group = await session.withFailover((api) => api.group(ref.id))
    const contacts = await this.store.contacts()
    const members = group.members.map((member) => {
      const pinned = contactOf(contacts, member.username)
      const fingerprint = (pinned?.fingerprint ?? member.fingerprint).toLowerCase()
      let trust: MemberTrust = 'not pinned'
      if (session.isMe(member.username)) trust = 'you'
      else if (pinned && pinned.fingerprint !== member.fingerprint.toLowerCase()) trust = 'changed'
      else if (pinned) trust = pinned.verified ? 'verified' : 'pinned'
      return {username: member.username, role: member.role, joinedAt: member.joinedAt, fingerprint, trust}
    })

    let key: GroupShowResult['key'] = null
    let keyProblem: string | undefined
    if (group.keyedBy === null) {
      keyProblem = "no key yet; any member's `send` makes it"
    } else {
      try {
        const opened = await directory.groupKeys.forEpoch(group.id, group.epoch)
        key = {epoch: opened.epoch, id: opened.id}
      } catch (error) {
        if (!(error instanceof GroupKeyUnavailable)) throw error
        keyProblem = error.message
      }
    }

    this.log(`${singleLine(group.name)}  ${group.id}`)
    const made = group.keyedBy === null ? '' : `, made by ${singleLine(group.keyedBy)}`
    this.log(`  key epoch ${group.epoch}${made}: ${key ? `key ${key.id}` : `✘ ${singleLine(keyProblem ?? '')}`}`)
    this.log(`  ${members.length} member${members.length === 1 ? '' : 's'}:`)
    const width = Math.max(...members.map((m) => m.username.length))
    for (const member of members) {
      const mark = {you: '(you)', verified: '✔ verified', pinned: 'pinned (not verified)', changed: '✘ CHANGED on the server', 'not pinned': 'not pinned (server’s claim)'}[member.trust]
      this.log(`    ${singleLine(member.username).padEnd(width)}  ${member.role.padEnd(6)}  ${formatFingerprint(member.fingerprint)}  ${mark}`)
    }
    if (group.invited.length > 0) {
      this.log(`  ${group.invited.length} invited (not members until they join):`)
      for (const invitation of group.invited) this.log(`    ${singleLine(invitation.username)}  invited by ${singleLine(invitation.by)}`)
    }
    const invited = group.invited
    return {id: group.id, name: group.name, createdAt: group.createdAt, epoch: group.epoch, keyedBy: group.keyedBy, key, ...(keyProblem ? {keyProblem} : {}), members, invited}
  }
}
