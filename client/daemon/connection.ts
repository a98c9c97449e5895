import {resolve} from 'node:path'

import type {Agent} from 'undici'
import type {z} from 'zod'

import {type GroupInvitation, ProtocolError} from '../api-client.js'
import {invitationList} from '../../protocol/answers.js'
import {FastChatError} from '../errors.js'
import {MAX_STREAM_EVENT_CHARS} from '../event-stream.js'
import {SseParser} from '../sse-parser.js'
import type {FastChatClient, Received, Sent, SentFileResult} from '../fastchat-client.js'
import type {KeyedGroup} from '../group-rekey.js'
import type {GroupRef} from '../group-targets.js'
import type {Report, Reporter} from '../reports.js'
import {isAlive, readDaemonInfo} from './daemon-file.js'
import {fromProblem} from './problem.js'
import {
  type DaemonInfo,
  type DaemonStatus,
  type FileChoice,
  groupRefAnswer,
  historyAnswer,
  itemAnswer,
  keyedGroupAnswer,
  messagesAnswer,
  POLL_TIMEOUT_DEFAULT_MS,
  sentAnswer,
  sentFileAnswer,
  statusAnswer,
  trustAnswer,
} from './protocol.js'

/**
 * How a CLI command finds the daemon of its profile, and talks to it: the
 * same operations as the library's FastChatClient, with the same results,
 * done by the daemon that holds the unlocked key (so nobody is asked for a
 * passphrase). Errors come back as the classes the library throws.
 */

export interface DaemonClientOptions {
  /** Reports the daemon made while doing what was asked (keys pinned on first use...). */
  onReport?: Reporter
  /** Which received files the daemon saves for this client's `messages()` and `history()` (relative `out` is taken from here). */
  files?: FileChoice
}

/** A daemon has this long to say it is there: one that cannot is taken as gone. */
const STATUS_TIMEOUT_MS = 5_000
/** Sends and history may upload or download files of hundreds of MiB. */
const TRANSFER_TIMEOUT_MS = 10 * 60_000
/** On top of a long poll's own wait. */
const POLL_GRACE_MS = 10_000

/**
 * The daemon running for `profileDir`, or undefined: no daemon.json, its
 * process gone, or no answer to GET /v1/status (a stale file is ignored).
 */
export async function findDaemon(profileDir: string, options: DaemonClientOptions = {}): Promise<DaemonClient | undefined> {
  const info = await readDaemonInfo(profileDir)
  if (!info || !isAlive(info.pid)) return undefined
  const client = new DaemonClient(info, options)
  const status = await client.status().catch(() => undefined)
  // Another process may have the port now: only ours answers with our token and our pid.
  if (status?.pid !== info.pid) {
    await client.close()
    return undefined
  }
  client.username = status.username
  return client
}

type History = Awaited<ReturnType<FastChatClient['history']>>

export class DaemonClient {
  /** The daemon's user, once its status was read. */
  username = ''
  /** Made at the first request: every CLI command looks for a daemon, and undici costs a few hundred ms to load. */
  private dispatcher?: Promise<Agent>
  private lastCursor?: number

  constructor(
    readonly info: DaemonInfo,
    private readonly options: DaemonClientOptions = {},
  ) {
  }

  // GET /v1/status
  status(): Promise<DaemonStatus> {
    return this.call('GET /v1/status', statusAnswer, {timeoutMs: STATUS_TIMEOUT_MS})
  }

  // POST /v1/send {to, text}
  async send(to: string, text: string): Promise<Sent> {
    return this.reported(await this.call('POST /v1/send', sentAnswer, {body: {to, text}, timeoutMs: TRANSFER_TIMEOUT_MS}))
  }

  // POST /v1/send {to, file, caption?}: the daemon reads the file itself.
  async sendFile(to: string, path: string, options: {caption?: string} = {}): Promise<SentFileResult> {
    const body = {to, file: resolve(path), ...(options.caption === undefined ? {} : {caption: options.caption})}
    return this.reported(await this.call('POST /v1/send', sentFileAnswer, {body, timeoutMs: TRANSFER_TIMEOUT_MS}))
  }

  // POST /v1/groups {name, members}
  async createGroup(name: string, members: string[]): Promise<KeyedGroup> {
    return this.reported(await this.call('POST /v1/groups', keyedGroupAnswer, {body: {name, members}, timeoutMs: TRANSFER_TIMEOUT_MS})) as unknown as KeyedGroup
  }

  // POST /v1/groups/add {group, user}
  async addMember(group: string, user: string): Promise<KeyedGroup> {
    return this.reported(await this.call('POST /v1/groups/add', keyedGroupAnswer, {body: {group, user}, timeoutMs: TRANSFER_TIMEOUT_MS})) as unknown as KeyedGroup
  }

  // POST /v1/groups/remove {group, user}
  async removeMember(group: string, user: string): Promise<KeyedGroup> {
    return this.reported(await this.call('POST /v1/groups/remove', keyedGroupAnswer, {body: {group, user}, timeoutMs: TRANSFER_TIMEOUT_MS})) as unknown as KeyedGroup
  }

  // GET /v1/groups/invitations
  async invitations(): Promise<GroupInvitation[]> {
    return (await this.call('GET /v1/groups/invitations', invitationList, {timeoutMs: STATUS_TIMEOUT_MS * 3})).invitations
  }

  // POST /v1/groups/join {group}
  async joinGroup(group: string): Promise<KeyedGroup> {
    return this.reported(await this.call('POST /v1/groups/join', keyedGroupAnswer, {body: {group}, timeoutMs: TRANSFER_TIMEOUT_MS})) as unknown as KeyedGroup
  }

  // POST /v1/groups/decline {group}
  async declineGroup(group: string): Promise<GroupRef> {
    return this.reported(await this.call('POST /v1/groups/decline', groupRefAnswer, {body: {group}, timeoutMs: TRANSFER_TIMEOUT_MS}))
  }

  // POST /v1/groups/leave {group}
  async leaveGroup(group: string): Promise<GroupRef> {
    return this.reported(await this.call('POST /v1/groups/leave', groupRefAnswer, {body: {group}, timeoutMs: TRANSFER_TIMEOUT_MS}))
  }

  // POST /v1/keys/trust {user, fingerprint}
  async trust(user: string, fingerprint: string): Promise<{username: string; previous: string | null; pinned: string}> {
    return this.reported(await this.call('POST /v1/keys/trust', trustAnswer, {body: {user, fingerprint}, timeoutMs: STATUS_TIMEOUT_MS * 3}))
  }

  /**
   * As FastChatClient.messages(), from the profile's stored cursor, which
   * the daemon moves once a page is answered: without `follow`, pages until
   * one has nothing (only the first waits `waitMs`). With `follow`, the
   * daemon's stream, which reads the chat server's as its `--transport` says.
   */
  async *messages(options: {follow?: boolean; waitMs?: number; signal?: AbortSignal} = {}): AsyncGenerator<Received, void, undefined> {
    const follow = options.follow ?? true
    if (follow) return yield* this.followed(options.signal)
    let waitMs = options.waitMs ?? (follow ? POLL_TIMEOUT_DEFAULT_MS : 0)
    while (!options.signal?.aborted) {
      const query = {timeout: String(waitMs), ...this.fileQuery()}
      const page = this.reported(await this.call('GET /v1/messages', messagesAnswer, {query, timeoutMs: waitMs + POLL_GRACE_MS, signal: options.signal}))
      this.lastCursor = page.next
      if (page.items.length === 0 && !follow) return
      yield* page.items
      if (!follow) waitMs = 0
    }
  }

  /** GET /v1/messages/stream: items and reports as the daemon writes them, until the signal (or the daemon goes away: FC_DAEMON_UNAVAILABLE). */
  private async *followed(signal?: AbortSignal): AsyncGenerator<Received, void, undefined> {
    const route = 'GET /v1/messages/stream'
    const url = new URL('/v1/messages/stream', this.info.url)
    for (const [key, value] of Object.entries(this.fileQuery())) url.searchParams.set(key, value)
    const {request} = await import('undici')
    const headers = {accept: 'text/event-stream', ...(this.info.token ? {authorization: `Bearer ${this.info.token}`} : {})}
    let response: Awaited<ReturnType<typeof request>>
    try {
      // No body timeout: a quiet stream is quiet (the daemon writes a comment every 15 s); a gone daemon closes it.
      response = await request(url, {dispatcher: await this.agent(), headers, headersTimeout: STATUS_TIMEOUT_MS, bodyTimeout: 0, signal})
    } catch (error) {
      if (signal?.aborted) return
      throw this.unavailable(error)
    }
    if (response.statusCode !== 200) {
      const text = await response.body.text()
      throw fromProblem(response.statusCode, parseJson(text))
    }
    const parser = new SseParser(MAX_STREAM_EVENT_CHARS)
    try {
      for await (const chunk of response.body as AsyncIterable<Buffer>) {
        for (const event of parser.push(chunk)) {
          const data = parseJson(event.data)
          if (event.type === 'report') {
            if (typeof (data as {type?: unknown} | null)?.type !== 'string') throw new ProtocolError(route, 'report', 'must be a report')
            this.options.onReport?.(data as Report)
            continue
          }
          const checked = itemAnswer.safeParse(data)
          if (!checked.success) throw ProtocolError.from(route, checked.error)
          yield data as Received
        }
        if (/^\d+$/.test(parser.lastId)) this.lastCursor = Number(parser.lastId)
      }
    } catch (error) {
      if (signal?.aborted) return
      if (error instanceof FastChatError) throw error
      throw this.unavailable(error)
    } finally {
      // Ours to end: the AbortError undici emits for it is nobody's problem.
      response.body.on('error', () => undefined).destroy()
    }
    if (!signal?.aborted) throw this.unavailable(new Error('the stream ended'))
  }

  /** The stored cursor: as the last page left it, else as the daemon says. */
  async cursor(): Promise<number> {
    return this.lastCursor ?? (await this.status()).cursor
  }

  // GET /v1/history?with=X&limit=N
  async history(peer: string, options: {limit?: number} = {}): Promise<History> {
    const query = {with: peer, ...(options.limit === undefined ? {} : {limit: String(options.limit)}), ...this.fileQuery()}
    return this.reported(await this.call('GET /v1/history', historyAnswer, {query, timeoutMs: TRANSFER_TIMEOUT_MS})) as unknown as History
  }

  // POST /v1/shutdown
  async shutdown(): Promise<void> {
    await this.call('POST /v1/shutdown', undefined, {timeoutMs: STATUS_TIMEOUT_MS})
  }

  private agent(): Promise<Agent> {
    const {socket} = this.info
    this.dispatcher ??= import('undici').then(({Agent}) => new Agent(socket ? {connect: {socketPath: socket}} : {}))
    return this.dispatcher
  }

  close(): Promise<void> {
    return this.dispatcher?.then((agent) => agent.close()) ?? Promise.resolve()
  }

  private fileQuery(): Record<string, string> {
    const {files, maxDownload, out} = this.options.files ?? {}
    return {
      ...(files === undefined ? {} : {files}),
      ...(maxDownload === undefined ? {} : {maxDownload: String(maxDownload)}),
      ...(out === undefined ? {} : {out: resolve(out)}),
    }
  }

  /** Hands the answer's reports to onReport, and returns the rest. */
  private reported<T extends {reports?: unknown[]}>(answer: T): Omit<T, 'reports'> {
    const {reports, ...rest} = answer
    for (const report of reports ?? []) this.options.onReport?.(report as Report)
    return rest
  }

  /**
   * One request. A daemon that cannot be reached is FC_DAEMON_UNAVAILABLE;
   * a problem is rebuilt as the error it stands for. The answer is checked
   * against `schema`, and returned as sent: checked, not rebuilt, so that
   * `--json` shows the library's values with their keys in the same order.
   */
  private async call<S extends z.ZodType>(
    route: string,
    schema: S | undefined,
    options: {query?: Record<string, string>; body?: unknown; timeoutMs: number; signal?: AbortSignal},
  ): Promise<z.output<S>> {
    const [method, path] = route.split(' ') as [string, string]
    const url = new URL(path, this.info.url)
    for (const [key, value] of Object.entries(options.query ?? {})) url.searchParams.set(key, value)
    let status: number
    let body: unknown
    try {
      const {request} = await import('undici')
      const answer = await request(url, {
        method: method as 'GET' | 'POST',
        dispatcher: await this.agent(),
        headers: {
          accept: 'application/json',
          ...(this.info.token ? {authorization: `Bearer ${this.info.token}`} : {}),
          ...(options.body === undefined ? {} : {'content-type': 'application/json'}),
        },
        body: options.body === undefined ? undefined : JSON.stringify(options.body),
        headersTimeout: options.timeoutMs,
        bodyTimeout: options.timeoutMs,
        signal: options.signal,
      })
      status = answer.statusCode
      const text = await answer.body.text()
      body = text === '' ? undefined : (JSON.parse(text) as unknown)
    } catch (error) {
      if (options.signal?.aborted) throw error
      throw this.unavailable(error)
    }
    if (status < 200 || status >= 300) throw fromProblem(status, body)
    if (!schema) return body as z.output<S>
    const checked = schema.safeParse(body)
    if (!checked.success) throw ProtocolError.from(route, checked.error)
    return body as z.output<S>
  }

  private unavailable(error: unknown): FastChatError {
    const where = this.info.socket ?? this.info.url
    return new FastChatError('FC_DAEMON_UNAVAILABLE', `The daemon at ${where} cannot be reached (${(error as Error).message}).`, {url: this.info.url, socket: this.info.socket, pid: this.info.pid}, {cause: error})
  }
}

function parseJson(text: string): unknown {
  try {
    return text === '' ? undefined : (JSON.parse(text) as unknown)
  } catch {
    return text
  }
}
