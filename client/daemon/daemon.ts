import {randomBytes} from 'node:crypto'
import {once} from 'node:events'
import {rm} from 'node:fs/promises'

import type {TransportMode} from '../event-stream.js'
import {type FastChatClient, maxDirectFileBytes} from '../fastchat-client.js'
import type {ReceiveFilesOptions} from '../file-receive.js'
import {MessageOpener} from '../receive.js'
import {removeDaemonInfo, writeDaemonInfo} from './daemon-file.js'
import {Feed} from './feed.js'
import type {DaemonInfo, FileChoice} from './protocol.js'
import type {ReportRouter} from './reports.js'
import {DaemonServer, type ListenAt} from './server.js'
import {runWebhook} from './webhook.js'

/**
 * A daemon for one profile (DESIGN.md section 9): its API served, its
 * daemon.json written, its webhook followed, until stop(), POST /v1/shutdown
 * or `idleTimeoutMs` without a request; then all of it undone.
 */

export interface DaemonOptions {
  /** Opened with `reports.reporter` as its onReport, its key unlocked already. */
  client: FastChatClient
  reports: ReportRouter
  profileDir: string
  listen: ListenAt
  /** False: no token (--no-auth). */
  auth: boolean
  files: (choice: FileChoice) => ReceiveFilesOptions | undefined
  defaultFiles: FileChoice
  webhook?: string
  /** How the daemon's stream and webhook read the chat server (default auto: the event stream, else long polls). */
  transport?: TransportMode
  idleTimeoutMs?: number
  /** Open a peer endpoint (docs/daemon.md, "The direct path"): what comes by it goes to the followers of the stored cursor. */
  peer?: {host?: string; port?: number}
  log: (line: string) => void
}

export interface RunningDaemon {
  info: DaemonInfo
  /** Settles once stopped and cleaned up; rejects with what stopped the webhook, if that is what stopped it. */
  stopped: Promise<void>
  stop(): void
}

/** 32 random bytes: not guessable, and short enough for a header. */
const TOKEN_BYTES = 32

export async function startDaemon(options: DaemonOptions): Promise<RunningDaemon> {
  const {client, reports, files, defaultFiles, log, profileDir} = options
  const stop = new AbortController()
  const feed = new Feed(client, reports, options.transport)
  const token = options.auth ? randomBytes(TOKEN_BYTES).toString('base64url') : undefined
  const server = new DaemonServer({client, feed, reports, files, defaultFiles, token, onShutdown: () => stop.abort(), log})
  const at = await server.listen(options.listen)
  const info: DaemonInfo = {...at, ...(token ? {token} : {}), pid: process.pid, startedAt: new Date().toISOString()}
  try {
    await writeDaemonInfo(profileDir, info)
  } catch (error) {
    await server.close()
    throw error
  }
  if (options.idleTimeoutMs !== undefined) server.exitWhenIdle(options.idleTimeoutMs, () => stop.abort())
  // The peer endpoint: messages and files that come by it go to the stream's readers and the webhook (Feed.showDirect).
  const directFiles = files(defaultFiles)
  const endpoint = options.peer
    ? await client.openPeerEndpoint(
        options.peer,
        {claim: (signedId, copy) => feed.claimDirect(signedId, copy), show: (message) => feed.showDirect(message)},
        new MessageOpener(client.session, directFiles, client.directory),
        maxDirectFileBytes(directFiles),
      )
    : undefined

  let failure: unknown
  const webhook = options.webhook
    ? runWebhook(feed, {url: options.webhook, files: files(defaultFiles), signal: stop.signal, log}).catch((error: unknown) => {
        if (stop.signal.aborted) return
        failure = error
        stop.abort()
      })
    : Promise.resolve()
  const stopped = (async () => {
    if (!stop.signal.aborted) await once(stop.signal, 'abort')
    await server.close()
    await endpoint?.close()
    await webhook
    // Read receipts still waiting for their second (Receipts.acknowledgeSoon) go before the daemon ends.
    await client.receipts.flushQueued()
    await removeDaemonInfo(profileDir, process.pid)
    if (at.socket) await rm(at.socket, {force: true})
    if (failure) throw failure
  })()
  return {info, stopped, stop: () => stop.abort()}
}
