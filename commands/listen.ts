import {Flags} from '@oclif/core'

import {findDaemon} from '../client/daemon/connection.js'
import type {TransportMode} from '../client/event-stream.js'
import {isGroupNotice, isPeerOfferNotice, isPresenceNotice} from '../client/event-sync.js'
import {isReceiptNotice} from '../client/receipts.js'
import {FastChatClient} from '../client/fastchat-client.js'
import type {Report} from '../client/reports.js'
import {BaseCommand} from './_lib/base-command.js'
import {jsonText} from './_lib/display.js'
import {formatMessage, formatNotice, formatPeerOffer, formatPresence, formatReceipt, formatReport, summarize} from './_lib/format.js'
import {progressFor} from './_lib/progress.js'
import {readReceiptsFlag, receiveFilesOptions, receiveFlags} from './_lib/receive-flags.js'

export default class Listen extends BaseCommand<typeof Listen> {
  static override summary = 'Follow new messages as they arrive, until Ctrl-C.'
  static override description =
    'Follows the event stream (SSE) of the chat server, or long-polls it where the stream cannot be used (--transport), and prints each message as `inbox` does (with --json: one JSON object per line). ' +
    'When the server goes away it asks the superserver for another and resumes from the saved cursor: nothing is lost or shown twice. ' +
    'Files from your contacts up to --max-download MiB are saved in <profile>/downloads (or --out DIR); others are listed (--download saves every file). ' +
    'Group events are shown as one line each (with --json, objects with a `type`), and a group left without a key is keyed. ' +
    'Presence changes of the people you talk with are shown only with --verbose (a line on stderr) or --json (`{"type": "presence", ...}`).'

  static override examples = [
    '<%= config.bin %> listen',
    '<%= config.bin %> listen --json | jq .text',
    '<%= config.bin %> listen --out ~/Downloads',
    '<%= config.bin %> listen --transport poll --verbose',
  ]

  static override flags = {
    ...receiveFlags,
    transport: Flags.string({
      summary: 'auto: the event stream, falling back to long-polls by itself when it cannot be used (a proxy that buffers it); stream or poll: only that.',
      options: ['auto', 'stream', 'poll'],
      default: 'auto',
    }),
    verbose: Flags.boolean({
      char: 'v',
      summary:
        'Say on stderr which transport is used, and when it changes, when people you talk with come online or go offline, show receipts for your messages, and with a peer endpoint which path each message came by.',
    }),
    peer: Flags.boolean({
      summary: 'Open a peer endpoint and offer it to your pinned contacts, so that their messages can also come directly (default: the profile\'s `config peer` setting, off).',
      allowNo: true,
    }),
    'peer-host': Flags.string({summary: 'The address the peer endpoint listens on.', default: '0.0.0.0', helpValue: 'ADDRESS'}),
    'peer-port': Flags.integer({summary: 'The port the peer endpoint listens on (0: a free one).', default: 0, min: 0, max: 65_535}),
    ...readReceiptsFlag,
  }

  async run(): Promise<void> {
    const json = this.jsonEnabled()
    // A daemon of this profile holds the unlocked key: listen follows its stream, and nobody is asked for the passphrase.
    const files = {files: this.flags.download ? 'all' : 'contacts', maxDownload: this.flags['max-download'], out: this.flags.out} as const
    const daemon = await findDaemon(this.store.dir, {onReport: (report) => this.report(report), files})
    const client = daemon ?? (await this.openClient(receiveFilesOptions(this.store.dir, this.flags, progressFor({json})), (report) => this.report(report)))
    // Ask for the passphrase now rather than at the first message, which may come hours later.
    if (client instanceof FastChatClient) await client.session.key()
    const server = client instanceof FastChatClient ? client.profile.server : `the daemon of ${this.store.dir}`
    const isMe = (username: string) => username.toLowerCase() === client.username.toLowerCase()
    const stop = new AbortController()
    const onSignal = () => stop.abort()
    process.once('SIGINT', onSignal)
    process.once('SIGTERM', onSignal)
    this.note(`Listening as ${client.username} on ${server}. Ctrl-C to stop.`)
    // The daemon reads the chat server its own way (see docs/daemon.md); this reads the daemon.
    if (daemon && this.flags.verbose) this.note(`Reading events through the daemon (--transport is the daemon's).`)
    const transport = this.flags.transport as TransportMode
    try {
      const readReceipts = this.flags['read-receipts']
      const peerOn = this.flags.peer ?? (client instanceof FastChatClient && client.profile.peer === true)
      if (daemon && this.flags.peer) this.note('Notice: reading through the daemon: the peer endpoint is the daemon\'s (`fastchat daemon --peer`).')
      const peer = peerOn ? {host: this.flags['peer-host'], port: this.flags['peer-port']} : undefined
      for await (const item of daemon ? daemon.messages({signal: stop.signal}) : client.messages({signal: stop.signal, transport, readReceipts, peer})) {
        // Receipts for my messages: a JSON line of their own, or with --verbose one sanitized line on stderr.
        if (isPeerOfferNotice(item)) {
          if (json) process.stdout.write(`${jsonText(item)}\n`)
          else if (this.flags.verbose) this.note(formatPeerOffer(item))
        } else if (isReceiptNotice(item)) {
          if (json) process.stdout.write(`${jsonText(item)}\n`)
          else if (this.flags.verbose) this.note(formatReceipt(item))
        } else if (json) process.stdout.write(`${jsonText(isGroupNotice(item) ? {...item, summary: summarize(item, isMe)} : item)}\n`)
        else if (isPresenceNotice(item)) {
          if (this.flags.verbose) this.note(formatPresence(item))
        } else if (isGroupNotice(item)) this.log(formatNotice(item, isMe))
        else {
          for (const line of formatMessage(item, {sentAsYou: true})) this.log(line)
          if (this.flags.verbose && item.via) this.note(item.via === 'direct' ? '(came directly from the sender)' : '(came through the server)')
        }
      }
    } catch (error) {
      // Ctrl-C during a poll of the daemon aborts the request: that is the end, not a failure.
      if (!stop.signal.aborted) throw error
    } finally {
      process.off('SIGINT', onSignal)
      process.off('SIGTERM', onSignal)
      await daemon?.close()
    }
  }

  /** Reports as notes on stderr; the transport only with --verbose, and with --json as a line of its own: `{"type":"transport",...}` (and `{"type":"peer.listening",...}`). */
  private report(report: Report): void {
    if (report.type === 'peer.listening' && this.jsonEnabled()) return void process.stdout.write(`${jsonText(report)}\n`)
    if (report.type !== 'transport') return this.note(formatReport(report))
    if (this.jsonEnabled()) process.stdout.write(`${jsonText(report)}\n`)
    else if (this.flags.verbose) this.note(formatReport(report))
  }
}
