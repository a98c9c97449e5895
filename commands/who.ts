import type {PresenceEntry} from '../protocol/presence.js'
import {BaseCommand} from './_lib/base-command.js'
import {singleLine} from './_lib/display.js'
import {timeAgo} from './_lib/format.js'

export interface WhoResult {
  users: PresenceEntry[]
}

/** The second column of `who`: what the server answered, for people. */
function status(entry: PresenceEntry, now: number): string {
  switch (entry.presence) {
    case 'online':
      return 'online'
    case 'offline':
      return entry.lastSeen ? `last seen ${timeAgo(entry.lastSeen, now)}` : 'offline'
    case 'hidden':
      return 'hidden'
    case 'unknown':
      return 'unknown'
  }
}

export default class Who extends BaseCommand<typeof Who> {
  static override summary = 'Show which of your contacts are online, or when they were last seen.'
  static override description =
    'Asks the server about your pinned contacts (or the users named). You see the presence of people who wrote to you ' +
    '(or share a group with you) and do not block you; others are "unknown", and those who turned theirs off ' +
    '(`fastchat presence off`) are "hidden". Online means a poll or stream of theirs is open now or was within the ' +
    "server's offline delay (90 s by default); last seen is as coarse as the servers' refresh of it (30 s)."

  static override examples = ['<%= config.bin %> who', '<%= config.bin %> who alice bob', '<%= config.bin %> who --json']

  static override strict = false

  async run(): Promise<WhoResult> {
    const {argv} = await this.parse(Who)
    const client = await this.openClient()
    const users = await client.presence(argv.length > 0 ? (argv as string[]) : undefined)
    if (users.length === 0) this.log('No contacts yet: `fastchat send <user> <text>` pins one, or name users: `fastchat who alice`.')
    const width = Math.max(0, ...users.map((user) => singleLine(user.username).length))
    const now = Date.now()
    for (const user of users) this.log(`${singleLine(user.username).padEnd(width)}  ${status(user, now)}`)
    return {users}
  }
}
