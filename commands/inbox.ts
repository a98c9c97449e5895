import {Flags} from '@oclif/core'

import {BaseCommand} from './_lib/base-command.js'
import {Directory} from '../client/directory.js'
import {EventSync, isGroupNotice, type SyncItem} from '../client/event-sync.js'
import {formatNotice, GroupEventResponder, type GroupNotice} from '../client/group-events.js'
import {progressFor} from './_lib/progress.js'
import {receiveFilesOptions, receiveFlags} from './_lib/receive-flags.js'
import {formatMessage, MessageOpener, type OpenedMessage} from '../client/receive.js'

export interface InboxResult {
  messages: OpenedMessage[]
  /** Group events (members added or removed, roles, keys), in stream order. */
  events: GroupNotice[]
  /** The event cursor saved in the profile after this run. */
  cursor: number
}

export default class Inbox extends BaseCommand<typeof Inbox> {
  static override summary = 'Fetch new messages once: decrypt, verify, print, and remember where you are.'
  static override description =
    'Each message is shown with its verification: "✔ verified" only when it is signed by the key pinned for its sender. ' +
    'A message from someone whose key changed on the server is shown with a warning and as not verified. ' +
    'The position (cursor) is saved after each batch is printed, so every message is shown once. ' +
    'Files from your contacts (people you wrote to, or whose key you verified or trusted) up to --max-download MiB are downloaded, decrypted, ' +
    'verified and saved in <profile>/downloads (or --out DIR), never over an existing file; other files are listed, and --download saves them too. ' +
    'Group messages are decrypted with the key of their epoch; group events are shown as one line each, and a group left without a key is keyed.'

  static override examples = ['<%= config.bin %> inbox', '<%= config.bin %> inbox --timeout 30000 --json', '<%= config.bin %> inbox --out ~/Downloads']

  static override flags = {
    timeout: Flags.integer({summary: 'Wait up to this many milliseconds for a message when there is none (max 60000).', default: 0, min: 0, max: 60_000}),
    ...receiveFlags,
  }

  async run(): Promise<InboxResult> {
    const session = await this.openSession()
    const directory = new Directory(session)
    const files = receiveFilesOptions(this.store.dir, this.flags, progressFor({json: this.jsonEnabled()}))
    const note = (line: string) => this.note(line)
    const sync = new EventSync(session, new MessageOpener(session, files, directory), note, new GroupEventResponder(directory, note))
    const messages: OpenedMessage[] = []
    const events: GroupNotice[] = []
    const deliver = (item: SyncItem) => {
      if (isGroupNotice(item)) {
        events.push(item)
        this.log(formatNotice(item))
      } else {
        messages.push(item)
        for (const line of formatMessage(item)) this.log(line)
      }
    }
    // Pages of events until one comes back empty; only the first may wait.
    let timeout = this.flags.timeout
    for (;;) {
      const cursor = sync.cursor
      const page = await session.withFailover(() => sync.page(timeout, deliver))
      if (page.events === 0 && !page.reset) break
      // Events that do not move the cursor (a broken or hostile server) would keep this loop going forever.
      if (!page.reset && sync.cursor === cursor) break
      if (page.events > 0) timeout = 0
    }
    if (messages.length === 0) this.log('No new messages.')
    return {messages, events, cursor: sync.cursor}
  }
}
