import {resolve} from 'node:path'
import {createInterface} from 'node:readline'

import {Flags} from '@oclif/core'

import {findDaemon} from '../client/daemon/connection.js'
import {startDaemon} from '../client/daemon/daemon.js'
import {daemonFile, type FileChoice} from '../client/daemon/protocol.js'
import {ReportRouter} from '../client/daemon/reports.js'
import type {TransportMode} from '../client/event-stream.js'
import {FastChatClient} from '../client/fastchat-client.js'
import {noProgress} from '../client/progress.js'
import {BaseCommand} from './_lib/base-command.js'
import {CliFailure, Exit} from './_lib/errors.js'
import {formatReport} from './_lib/format.js'
import {readPassphrase} from './_lib/prompts.js'
import {DEFAULT_AUTO_DOWNLOAD_MIB, receiveFilesOptions, receiveFlags} from './_lib/receive-flags.js'

export default class Daemon extends BaseCommand<typeof Daemon> {
  static override summary = 'Hold your unlocked key and serve a local JSON API, so that programs (and your other commands) can chat without it.'
  static override description =
    'The passphrase is asked once, at start (or taken from FASTCHAT_PASSPHRASE). The API listens on 127.0.0.1 (--port; 0, the default, picks a free port) ' +
    'or a Unix socket (--socket), and takes a bearer token, written with the URL to <profile>/daemon.json (0600) unless --no-auth. ' +
    'While it runs, `send`, `inbox` and `history` of this profile go through it and ask for no passphrase. ' +
    'With --webhook URL every message and group event is POSTed to URL as JSON, again until it answers 2xx. ' +
    'Files from your contacts are saved as `inbox` saves them (--out, --download, --max-download). See docs/daemon.md.'

  static override examples = [
    '<%= config.bin %> daemon --port 7777',
    '<%= config.bin %> daemon --socket ~/.config/fastchat/daemon.sock',
    '<%= config.bin %> daemon --webhook http://127.0.0.1:8080/fastchat',
  ]

  // It runs until stopped: there is no value to print at the end.
  static override enableJsonFlag = false

  static override flags = {
    port: Flags.integer({summary: 'Listen on 127.0.0.1 at this port (0: a free one).', default: 0, min: 0, max: 65_535, exclusive: ['socket']}),
    socket: Flags.string({summary: 'Listen on this Unix socket instead (made 0600).', helpValue: 'PATH'}),
    auth: Flags.boolean({summary: 'Require the bearer token of daemon.json (--no-auth: anyone on this machine may use your key).', default: true, allowNo: true}),
    webhook: Flags.string({summary: 'POST every message and group event to this URL as JSON, retrying until it answers 2xx.', helpValue: 'URL'}),
    transport: Flags.string({
      summary: 'How its stream and webhook read the chat server: auto (the event stream, falling back to long-polls), stream or poll.',
      options: ['auto', 'stream', 'poll'],
      default: 'auto',
    }),
    'idle-timeout': Flags.integer({summary: 'Stop after this many milliseconds without a request (`fastchat unlock` sets it).', min: 1_000, helpValue: 'MS'}),
    'passphrase-stdin': Flags.boolean({summary: 'Read the key passphrase from the first line of stdin (`fastchat unlock` pipes it).'}),
    peer: Flags.boolean({
      summary: "Open a peer endpoint and offer it to your pinned contacts: what comes directly goes to the stream's readers and the webhook (default: the profile's `config peer` setting, off).",
      allowNo: true,
    }),
    'peer-host': Flags.string({summary: 'The address the peer endpoint listens on.', default: '0.0.0.0', helpValue: 'ADDRESS'}),
    'peer-port': Flags.integer({summary: 'The port the peer endpoint listens on (0: a free one).', default: 0, min: 0, max: 65_535}),
    ...receiveFlags,
  }

  async run(): Promise<void> {
    const {flags} = this
    if (flags.webhook !== undefined && !/^https?:\/\/\S+$/.test(flags.webhook)) this.error('--webhook must be an http:// or https:// URL.', {exit: Exit.input})
    const running = await findDaemon(this.store.dir)
    if (running) {
      this.error(`A daemon already runs for this profile (pid ${running.info.pid}, ${running.info.socket ?? running.info.url}).`, {
        exit: Exit.input,
        suggestions: ['`fastchat lock` stops it.'],
      })
    }
    const reports = new ReportRouter((report) => this.note(formatReport(report)))
    const passphrase = flags['passphrase-stdin'] ? firstStdinLine : readPassphrase
    const client = await FastChatClient.open({store: this.store, passphrase, onReport: reports.reporter})
    // Asked once, now: from here on the key is in this process's memory, and nobody is asked again.
    await client.session.key()
    const daemon = await startDaemon({
      client,
      reports,
      profileDir: this.store.dir,
      listen: flags.socket ? {socket: resolve(flags.socket)} : {port: flags.port},
      auth: flags.auth,
      files: (choice: FileChoice) => (choice.files === 'none' ? undefined : receiveFilesOptions(this.store.dir, fileFlags(choice), noProgress)),
      defaultFiles: {files: flags.download ? 'all' : 'contacts', maxDownload: flags['max-download'], ...(flags.out ? {out: resolve(flags.out)} : {})},
      webhook: flags.webhook,
      transport: flags.transport as TransportMode,
      idleTimeoutMs: flags['idle-timeout'],
      ...((flags.peer ?? client.profile.peer === true) ? {peer: {host: flags['peer-host'], port: flags['peer-port']}} : {}),
      log: (line) => this.note(line),
    })
    const onSignal = () => daemon.stop()
    process.once('SIGINT', onSignal)
    process.once('SIGTERM', onSignal)
    const {info} = daemon
    const token = info.token ? `token in ${daemonFile(this.store.dir)}` : 'no token: --no-auth'
    this.log(`FastChat daemon for ${client.username} listening on ${info.socket ?? info.url} (${token}). Ctrl-C to stop.`)
    // Started by `fastchat unlock`: it waits for this, then leaves us running on our own.
    if (process.send) {
      process.send({ready: true, pid: info.pid})
      process.disconnect()
    }
    try {
      await daemon.stopped
    } finally {
      process.off('SIGINT', onSignal)
      process.off('SIGTERM', onSignal)
    }
  }
}

/** The daemon's file choice as `inbox`'s flags. */
const fileFlags = (choice: FileChoice) => ({out: choice.out, download: choice.files === 'all', 'max-download': choice.maxDownload ?? DEFAULT_AUTO_DOWNLOAD_MIB})

/** The passphrase `fastchat unlock` pipes in: one line, read once; stdin is let go after it. */
async function firstStdinLine(): Promise<string> {
  const lines = createInterface({input: process.stdin, terminal: false})
  for await (const line of lines) {
    lines.close()
    process.stdin.destroy()
    if (line !== '') return line
    break
  }
  throw new CliFailure('--passphrase-stdin was given but stdin has no passphrase.', Exit.input)
}
