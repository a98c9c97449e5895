import {Args, Flags} from '@oclif/core'

import {findDaemon} from '../client/daemon/connection.js'
import {prepareDownloadDir} from '../client/downloads.js'
import type {GroupRef} from '../client/group-targets.js'
import type {OpenedMessage} from '../client/receive.js'
import {BaseCommand} from './_lib/base-command.js'
import {singleLine} from './_lib/display.js'
import {formatMessage, formatReport} from './_lib/format.js'
import {progressFor} from './_lib/progress.js'
import {readReceiptsFlag} from './_lib/receive-flags.js'

export interface HistoryResult {
  /** The user, or `group:<id>`. */
  with: string
  /** For a group's history. */
  group?: GroupRef
  /** Oldest first. */
  messages: OpenedMessage[]
}

export default class History extends BaseCommand<typeof History> {
  static override summary = 'Show the latest messages with a user or in a group, oldest first, decrypted and verified.'
  static override description =
    "Your own messages are readable too (each is encrypted to you as well) and are checked against your own key; the other person's " +
    'against the key pinned for them. ' +
    'Files and images are listed with their captions; --download also fetches, decrypts, verifies and saves them (a new copy each time). ' +
    "A group's history holds only the key epochs you were a member of. Users and groups are named as for `send`."

  static override examples = ['<%= config.bin %> history bob', '<%= config.bin %> history bob --limit 100 --json', '<%= config.bin %> history "#friends"']

  static override args = {
    with: Args.string({description: 'The other person (a user, or @user), or a group (its id, or #name).', required: true}),
  }

  static override flags = {
    limit: Flags.integer({summary: 'How many of the latest messages to show.', default: 20, min: 1, max: 1000}),
    download: Flags.boolean({summary: 'Download, decrypt, verify and save the files in these messages.', default: false}),
    out: Flags.directory({summary: 'Save files here instead of <profile>/downloads (with --download).', helpValue: 'DIR', dependsOn: ['download']}),
    ...readReceiptsFlag,
  }

  async run(): Promise<HistoryResult> {
    const files = this.flags.download
      ? {dir: () => prepareDownloadDir(this.store.dir, this.flags.out), progress: progressFor({json: this.jsonEnabled()})}
      : undefined
    // A daemon of this profile holds the unlocked key: it reads, and nobody is asked for the passphrase.
    const daemonFiles = {files: this.flags.download ? 'all' : 'none', out: this.flags.out} as const
    const client = (await findDaemon(this.store.dir, {onReport: (report) => this.note(formatReport(report)), files: daemonFiles})) ?? (await this.openClient(files))
    const {with: peer, messages} = await client.history(this.args.with, {limit: this.flags.limit, readReceipts: this.flags['read-receipts']})
    for (const message of messages) for (const line of formatMessage(message)) this.log(line)
    if (peer.kind === 'group') {
      if (messages.length === 0) this.log(`No messages in #${singleLine(peer.group.name ?? peer.group.id)} yet.`)
      return {with: `group:${peer.group.id}`, group: peer.group, messages}
    }
    if (messages.length === 0) this.log(`No messages with ${singleLine(peer.username)} yet.`)
    return {with: peer.username, messages}
  }
}
