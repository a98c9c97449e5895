import {setTimeout as sleep} from 'node:timers/promises'

import {Flags} from '@oclif/core'

import {isFailoverError} from '../client/api-client.js'
import {BaseCommand} from './_lib/base-command.js'
import {Directory} from '../client/directory.js'
import {jsonText, singleLine} from './_lib/display.js'
import {EventSync, isGroupNotice, type SyncItem} from '../client/event-sync.js'
import {formatNotice, GroupEventResponder} from '../client/group-events.js'
import {progressFor} from './_lib/progress.js'
import {receiveFilesOptions, receiveFlags} from './_lib/receive-flags.js'
import {formatMessage, MessageOpener} from '../client/receive.js'

/** Each long poll waits this long: under the 60 s idle timeout of common proxies, and the server's default. */
const LONG_POLL_MS = 30_000
/** Reconnection backoff: quick for a server switch, capped so a long outage costs at most 5 s once it ends. */
const BACKOFF_START_MS = 200
const BACKOFF_MAX_MS = 5_000

export default class Listen extends BaseCommand<typeof Listen> {
  static override summary = 'Follow new messages as they arrive, until Ctrl-C.'
  static override description =
    'Long-polls the chat server and prints each message as `inbox` does (with --json: one JSON object per line). ' +
    'When the server goes away it asks the superserver for another and resumes from the saved cursor: nothing is lost or shown twice. ' +
    'Files from your contacts up to --max-download MiB are saved in <profile>/downloads (or --out DIR); others are listed (--download saves every file). ' +
    'Group events are shown as one line each (with --json, objects with a `type`), and a group left without a key is keyed.'

  static override examples = ['<%= config.bin %> listen', '<%= config.bin %> listen --json | jq .text', '<%= config.bin %> listen --out ~/Downloads']

  static override flags = {
    ...receiveFlags,
  }

  async run(): Promise<void> {
    const session = await this.openSession()
    // Ask for the passphrase now rather than at the first message, which may come hours later.
    await session.key()
    const json = this.jsonEnabled()
    const deliver = (item: SyncItem) => {
      if (json) process.stdout.write(`${jsonText(item)}\n`)
      else if (isGroupNotice(item)) this.log(formatNotice(item))
      else for (const line of formatMessage(item)) this.log(line)
    }
    const files = receiveFilesOptions(this.store.dir, this.flags, progressFor({json}))
    const directory = new Directory(session)
    const note = (line: string) => process.stderr.write(`${singleLine(line)}\n`)
    const sync = new EventSync(session, new MessageOpener(session, files, directory), note, new GroupEventResponder(directory, note))

    const stop = new AbortController()
    const onSignal = () => stop.abort()
    process.once('SIGINT', onSignal)
    process.once('SIGTERM', onSignal)
    this.note(`Listening as ${session.username} on ${session.profile.server}. Ctrl-C to stop.`)
    let backoff = BACKOFF_START_MS
    let failing = false
    try {
      while (!stop.signal.aborted) {
        try {
          await sync.page(LONG_POLL_MS, deliver, stop.signal)
          if (failing) this.note(`reconnected to ${session.profile.server}`)
          failing = false
          backoff = BACKOFF_START_MS
        } catch (error) {
          if (stop.signal.aborted) break
          if (!isFailoverError(error)) throw error
          failing = true
          await sleep(backoff, undefined, {signal: stop.signal}).catch(() => undefined)
          backoff = Math.min(backoff * 2, BACKOFF_MAX_MS)
          // The superserver may be down too: then the next round retries where we were.
          if (!stop.signal.aborted) await session.failover().catch(() => undefined)
        }
      }
    } finally {
      process.off('SIGINT', onSignal)
      process.off('SIGTERM', onSignal)
    }
  }
}
