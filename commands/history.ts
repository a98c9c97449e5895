import {Args, Flags} from '@oclif/core'

import type {HistoryMessage} from '../client/api-client.js'
import {BaseCommand} from './_lib/base-command.js'
import {Directory} from '../client/directory.js'
import {singleLine} from './_lib/display.js'
import {prepareDownloadDir} from '../client/downloads.js'
import type {GroupRef} from '../client/group-targets.js'
import {progressFor} from './_lib/progress.js'
import {formatMessage, MessageOpener, type OpenedMessage} from '../client/receive.js'

export interface HistoryResult {
  /** The user, or `group:<id>`. */
  with: string
  /** For a group's history. */
  group?: GroupRef
  /** Oldest first. */
  messages: OpenedMessage[]
}

/** The server's largest page for a conversation. */
const SERVER_PAGE_MAX = 200

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
  }

  async run(): Promise<HistoryResult> {
    const session = await this.openSession()
    const directory = new Directory(session)
    const target = await directory.groups.target(this.args.with, directory.keys)
    const peer = target.kind === 'group' ? target.group.id : target.username
    const newestFirst: HistoryMessage[] = []
    let before: string | undefined
    while (newestFirst.length < this.flags.limit) {
      const limit = Math.min(SERVER_PAGE_MAX, this.flags.limit - newestFirst.length)
      const page = await session.withFailover((api) => api.conversation(peer, limit, before))
      // A message that does not match the API is left out, with one notice (docs/cli.md "What is printed").
      for (const {error} of page.rejected) this.note(`Notice: skipped a message: ${error.message}`)
      newestFirst.push(...page.messages)
      if (!page.next || page.messages.length === 0) break
      before = page.next
    }
    const files = this.flags.download
      ? {dir: () => prepareDownloadDir(this.store.dir, this.flags.out), progress: progressFor({json: this.jsonEnabled()})}
      : undefined
    const opener = new MessageOpener(session, files, directory)
    const messages: OpenedMessage[] = []
    // A signed id met twice is one message stored twice (replayed by the server): shown once, the first time.
    const signedIds = new Set<string>()
    for (const message of newestFirst.reverse()) {
      const opened = await opener.open(message)
      if (opened.signedId !== undefined && signedIds.has(opened.signedId)) continue
      if (opened.signedId !== undefined) signedIds.add(opened.signedId)
      messages.push(opened)
    }
    for (const message of messages) for (const line of formatMessage(message)) this.log(line)
    if (target.kind === 'group') {
      if (messages.length === 0) this.log(`No messages in #${singleLine(target.group.name ?? target.group.id)} yet.`)
      return {with: `group:${target.group.id}`, group: target.group, messages}
    }
    if (messages.length === 0) this.log(`No messages with ${singleLine(target.username)} yet.`)
    return {with: target.username, messages}
  }
}
