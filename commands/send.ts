import {Args, Flags} from '@oclif/core'

import {findDaemon} from '../client/daemon/connection.js'
import {closePeerConnections} from '../client/peer.js'
import {FastChatClient, type Sent} from '../client/fastchat-client.js'
import {formatSize} from '../client/downloads.js'
import {readFileToSend, type SentFile} from '../client/file-send.js'
import type {MessageGroup} from '../client/opened.js'
import {BaseCommand} from './_lib/base-command.js'
import {singleLine} from './_lib/display.js'
import {Exit} from './_lib/errors.js'
import {formatReport} from './_lib/format.js'
import {progressFor} from './_lib/progress.js'
import {readStdinText} from './_lib/prompts.js'

export interface SendResult {
  id: string
  sentAt: string
  /** A username, or `group:<id>`. */
  to: string
  /** For a group: which, and the key epoch the message was encrypted under. */
  group?: MessageGroup
  /** With --wait: the receipt that came (a read receipt also answers `--wait delivered`). */
  receipt?: {status: 'delivered' | 'read'; by: string}
}

/** With --image: the file as sent (name and type travel encrypted; the server sees only the blob id and its size). */
export type SendFileResult = Omit<SentFile, 'to'> & {to: string; group?: MessageGroup; caption: boolean}

export default class Send extends BaseCommand<typeof Send> {
  static override summary = 'Send an end-to-end encrypted, signed text message, image or file to a user or a group.'
  static override description =
    "The message is encrypted on this machine to the recipient's key and your own (so that `history` can show it), and signed. " +
    'The first time you write to someone their key is pinned; if it changes later, nothing is sent until you check it with ' +
    '`fastchat keys verify`. A failed server is replaced by another one from the superserver, and the message is sent once. ' +
    "With --image FILE (any file, not only images) the file's name, type and bytes are encrypted together and uploaded, and the text, if any, is its caption. " +
    "To a group, the message is encrypted once under the group's current key (made first if the group has none) and signed. " +
    'The recipient is a group when it is a group id or #name, a user when it is @name; a bare name is the group of yours with that name, ' +
    'if any, else the user (and an error if it is both).'

  static override examples = [
    '<%= config.bin %> send bob "See you at noon"',
    'uptime | <%= config.bin %> send bob -',
    '<%= config.bin %> send bob --image photo.png "The view from here"',
    '<%= config.bin %> send "#friends" "Dinner at eight?"',
  ]

  static override args = {
    to: Args.string({description: 'The recipient: a user (or @user), or a group (its id, or #name).', required: true}),
    text: Args.string({description: 'The message (with --image: an optional caption); `-` reads it from stdin.'}),
  }

  static override flags = {
    image: Flags.string({summary: 'Send this file (an image or any other file), encrypted; the text becomes its caption.', helpValue: 'FILE'}),
    wait: Flags.string({
      summary: "After sending a text, wait for its receipt: delivered (the recipient's client fetched it) or read; exit 3 if none comes within --timeout.",
      options: ['delivered', 'read'],
      exclusive: ['image'],
    }),
    timeout: Flags.string({summary: 'With --wait: how long to wait (30s, 2m, 500ms); default 30s.', dependsOn: ['wait'], helpValue: 'DURATION'}),
  }

  async run(): Promise<SendResult | SendFileResult> {
    const {image} = this.flags
    const raw = this.args.text === '-' ? (await readStdinText()).replace(/\r?\n$/, '') : this.args.text
    if (raw === undefined && !image) this.error('Missing the message text.', {exit: Exit.input, suggestions: ['Pass the text (or `-` to read stdin), or --image FILE.']})
    const text = raw ?? ''
    if (text.trim() === '' && !image) this.error('The message is empty.', {exit: Exit.input})
    // Before any network: a wrong path is the most likely mistake.
    const file = image ? await readFileToSend(image) : undefined
    const caption = text.trim() === '' ? undefined : text

    // A daemon of this profile holds the unlocked key: it sends, and nobody is asked for the passphrase.
    const daemon = await findDaemon(this.store.dir, {onReport: (report) => this.note(formatReport(report))})
    if (file) {
      const sent = daemon
        ? await daemon.sendFile(this.args.to, image!, {caption})
        : await (await this.openClient()).sendFile(this.args.to, file, {caption, progress: progressFor({json: this.jsonEnabled()})})
      this.log(`Sent ${singleLine(file.name)} (${formatSize(sent.size)}, ${singleLine(sent.type)}) to ${where(sent)} at ${sent.sentAt} (message ${sent.id}).`)
      const {members: _members, ...result} = sent
      return {...result, caption: caption !== undefined}
    }
    const wait = this.flags.wait as 'delivered' | 'read' | undefined
    const timeout = this.flags.timeout ?? '30s'
    const timeoutMs = wait ? durationMs(timeout) : 0
    if (wait && timeoutMs === undefined) this.error(`--timeout ${timeout} is not a duration.`, {exit: Exit.input, suggestions: ['Write it as 30s, 2m or 500ms.']})
    // Before sending: the receipt comes after the message in my stream, however quick the recipient.
    const cursor = (await this.store.state()).cursor
    const client = daemon ?? (await this.openClient())
    const sent = await client.send(this.args.to, text).finally(closePeerConnections)
    if (sent.queued) this.log(`Delivered directly to ${where(sent)} (message ${sent.id}); no server answered, so it is kept here and stored on the server at the next send or listen.`)
    else this.log(`Sent to ${where(sent)} at ${sent.sentAt} (message ${sent.id})${sent.via?.includes('direct') ? ', also directly' : ''}.`)
    const {members: _members, ...result} = sent
    if (!wait) return result
    // The wait reads my stream without moving the cursor `inbox` keeps; through a daemon it needs a session of its own
    // (the passphrase only for a read receipt, which is encrypted).
    const waiter = client instanceof FastChatClient ? client : await this.openClient()
    const receipt = await waiter.receipts.waitFor(sent.id, wait, cursor, timeoutMs!)
    if (!receipt) this.error(`No ${wait} receipt for message ${sent.id} within ${timeout}.`, {exit: Exit.network, suggestions: ['It was sent all the same: `fastchat history` shows ✓✓ once it is delivered.']})
    this.log(receipt.status === 'read' ? `Read by ${singleLine(receipt.by)}.` : `Delivered to ${singleLine(receipt.by)}.`)
    return {...result, receipt}
  }
}

/** `30s`, `2m`, `500ms`, or a number of seconds; undefined when it is none of these (or over an hour). */
function durationMs(text: string): number | undefined {
  const match = /^(\d{1,7})(ms|s|m)?$/.exec(text.trim())
  if (!match) return undefined
  const ms = Number(match[1]) * (match[2] === 'ms' ? 1 : match[2] === 'm' ? 60_000 : 1_000)
  return ms > 0 && ms <= 3_600_000 ? ms : undefined
}

/** `bob`, or `#friends (3 members, key epoch 2)`. */
function where(sent: Sent): string {
  if (!sent.group) return singleLine(sent.to)
  return `#${singleLine(sent.group.name ?? sent.group.id)} (${sent.members} members, key epoch ${sent.group.epoch})`
}
