import {Flags} from '@oclif/core'

import {findDaemon} from '../client/daemon/connection.js'
import {isGroupNotice, isPeerOfferNotice, isPresenceNotice} from '../client/event-sync.js'
import {isReceiptNotice, type ReceiptNotice} from '../client/receipts.js'
import type {OpenedMessage} from '../client/receive.js'
import {BaseCommand} from './_lib/base-command.js'
import {formatMessage, formatNotice, formatReport, type ShownNotice, summarize} from './_lib/format.js'
import {progressFor} from './_lib/progress.js'
import {readReceiptsFlag, receiveFilesOptions, receiveFlags} from './_lib/receive-flags.js'

export interface InboxResult {
  messages: OpenedMessage[]
  /** Group events (members added or removed, roles, keys), in stream order. */
  events: ShownNotice[]
  /** Receipts for your messages (delivered, read), in stream order; not printed. */
  receipts: ReceiptNotice[]
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
    ...readReceiptsFlag,
  }

  async run(): Promise<InboxResult> {
    // A daemon of this profile holds the unlocked key: it reads (and moves the cursor), and nobody is asked for the passphrase.
    const files = {files: this.flags.download ? 'all' : 'contacts', maxDownload: this.flags['max-download'], out: this.flags.out} as const
    const client =
      (await findDaemon(this.store.dir, {onReport: (report) => this.note(formatReport(report)), files})) ??
      (await this.openClient(receiveFilesOptions(this.store.dir, this.flags, progressFor({json: this.jsonEnabled()}))))
    const isMe = (username: string) => username.toLowerCase() === client.username.toLowerCase()
    const messages: OpenedMessage[] = []
    const events: ShownNotice[] = []
    const receipts: ReceiptNotice[] = []
    const readReceipts = this.flags['read-receipts']
    // Pages of events until one comes back empty; only the first may wait.
    for await (const item of client.messages({follow: false, waitMs: this.flags.timeout, readReceipts})) {
      // Presence changes are for `listen` (and `who`); an inbox shows what was said.
      if (isPresenceNotice(item) || isPeerOfferNotice(item)) continue
      if (isReceiptNotice(item)) {
        receipts.push(item)
      } else if (isGroupNotice(item)) {
        events.push({...item, summary: summarize(item, isMe)})
        this.log(formatNotice(item, isMe))
      } else {
        messages.push(item)
        for (const line of formatMessage(item, {sentAsYou: true})) this.log(line)
      }
    }
    if (messages.length === 0) this.log('No new messages.')
    return {messages, events, receipts, cursor: await client.cursor()}
  }
}
