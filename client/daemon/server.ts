import {createHash, timingSafeEqual} from 'node:crypto'
import {lstat, rm} from 'node:fs/promises'
import {createServer, type IncomingMessage, type Server, type ServerResponse} from 'node:http'
import type {AddressInfo} from 'node:net'

import type {z} from 'zod'

import type {FastChatClient} from '../fastchat-client.js'
import type {ReceiveFilesOptions} from '../file-receive.js'
import {type Feed, type Page} from './feed.js'
import {DaemonError, PROBLEM_CONTENT_TYPE, toProblem} from './problem.js'
import {createGroupBody, type FileChoice, historyQuery, lastEventId, leaveBody, memberBody, messagesQuery, sendBody, streamQuery, trustBody} from './protocol.js'
import type {ReportRouter} from './reports.js'
import {eventName} from './webhook.js'

/**
 * The daemon's local HTTP API (docs/daemon.md): plaintext JSON on 127.0.0.1
 * or a Unix socket, for programs that never touch keys. Every request needs
 * the bearer token (unless the daemon runs with --no-auth), names this
 * machine in its Host header (a web page's DNS-rebound name is refused), and
 * comes from no browser (an Origin header or a CORS preflight is refused):
 * the daemon holds an unlocked key, and a web page must not reach it.
 */

export interface DaemonDeps {
  client: FastChatClient
  feed: Feed
  reports: ReportRouter
  /** How received files are saved for a request's choice (`none`: listed only). */
  files: (choice: FileChoice) => ReceiveFilesOptions | undefined
  /** For the stream and the long poll when the request does not choose. */
  defaultFiles: FileChoice
  /** Undefined with --no-auth. */
  token?: string
  /** POST /v1/shutdown was answered. */
  onShutdown: () => void
  /** A line for the daemon's standard error. */
  log: (line: string) => void
}

export type ListenAt = {port: number} | {socket: string}

/** A comment line every 15 s keeps proxies and clients from taking a quiet stream for a dead one. */
const HEARTBEAT_MS = 15_000
/** `{to, text}` of a text at the chat server's limit, with room to spare; files are sent by path. */
const BODY_LIMIT_BYTES = 256 * 1024
/** On close, requests in flight get this long to finish before their connections are cut. */
const CLOSE_GRACE_MS = 2_000

const LOOPBACK_HOST = /^(?:127\.0\.0\.1|localhost)(?::\d{1,5})?$/i

export class DaemonServer {
  private readonly server: Server
  /** Aborted on close: every long poll and stream ends. */
  private readonly stopping = new AbortController()
  private readonly tokenDigest?: Buffer
  private active = 0
  private idle?: {ms: number; onIdle: () => void; timer?: NodeJS.Timeout}

  constructor(private readonly deps: DaemonDeps) {
    this.tokenDigest = deps.token === undefined ? undefined : digest(deps.token)
    this.server = createServer((req, res) => void this.serve(req, res))
  }

  /** Listens; a Unix socket is made 0600 from the start, replacing a stale one. */
  async listen(at: ListenAt): Promise<{url: string; socket?: string}> {
    if ('socket' in at) {
      if ((await lstat(at.socket).catch(() => undefined))?.isSocket()) await rm(at.socket)
      const umask = process.umask(0o177)
      try {
        await this.bind(at.socket)
      } finally {
        process.umask(umask)
      }
      return {url: 'http://localhost', socket: at.socket}
    }
    await this.bind({host: '127.0.0.1', port: at.port})
    return {url: `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`}
  }

  /** Calls `onIdle` once no request has been in progress for `ms`. */
  exitWhenIdle(ms: number, onIdle: () => void): void {
    this.idle = {ms, onIdle}
    this.arm()
  }

  async close(): Promise<void> {
    this.stopping.abort()
    clearTimeout(this.idle?.timer)
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()))
    this.server.closeIdleConnections()
    const cut = setTimeout(() => this.server.closeAllConnections(), CLOSE_GRACE_MS)
    await closed
    clearTimeout(cut)
  }

  private bind(at: string | {host: string; port: number}): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject)
      const done = () => {
        this.server.off('error', reject)
        resolve()
      }
      if (typeof at === 'string') this.server.listen(at, done)
      else this.server.listen(at.port, at.host, done)
    })
  }

  private arm(): void {
    if (!this.idle || this.active > 0 || this.stopping.signal.aborted) return
    clearTimeout(this.idle.timer)
    this.idle.timer = setTimeout(this.idle.onIdle, this.idle.ms)
    this.idle.timer.unref()
  }

  private async serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      this.admit(req)
      // Only a request with the token is use: anyone else's pings do not keep an `unlock` agent alive.
      this.active++
      clearTimeout(this.idle?.timer)
      res.once('close', () => {
        this.active--
        this.arm()
      })
      await this.route(req, res)
    } catch (error) {
      // The client went away, or the daemon stops: nobody to answer.
      if (res.destroyed || this.stopping.signal.aborted) return void res.destroy()
      const problem = toProblem(error)
      if (problem.code === 'FC_INTERNAL') this.deps.log(`Error: ${error instanceof Error ? ((process.env.DEBUG && error.stack) || error.message) : String(error)}`)
      if (res.headersSent) res.destroy()
      else await answer(res, problem.status, problem, {'content-type': PROBLEM_CONTENT_TYPE, ...(problem.status === 401 ? {'www-authenticate': 'Bearer'} : {})})
    }
  }

  /** Loopback names only, no browser, and the token. */
  private admit(req: IncomingMessage): void {
    if (!LOOPBACK_HOST.test(req.headers.host ?? '')) {
      throw new DaemonError(403, 'FC_FORBIDDEN', 'The Host header must be 127.0.0.1 or localhost: the daemon answers this machine only.')
    }
    if (req.method === 'OPTIONS' || req.headers.origin !== undefined) {
      throw new DaemonError(403, 'FC_FORBIDDEN', 'The daemon does not answer web pages: no CORS, no Origin header.')
    }
    if (!this.tokenDigest) return
    const presented = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '')?.[1]
    // Digests of equal length, compared in constant time: neither the token nor its length leaks by timing.
    if (!presented || !timingSafeEqual(digest(presented), this.tokenDigest)) {
      throw new DaemonError(401, 'FC_UNAUTHORIZED', 'A bearer token is needed: the one in daemon.json of the profile.')
    }
  }

  private async route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost')
    const query = Object.fromEntries(url.searchParams)
    const {client, reports} = this.deps
    switch (`${req.method} ${url.pathname}`) {
      // GET /v1/status
      case 'GET /v1/status': {
        const status = {username: client.username, server: client.profile.server, cursor: await client.cursor(), pid: process.pid, unlocked: true}
        // How the daemon's followers (its stream, its webhook) read the chat server now: stream, poll, or null when none runs.
        await answer(res, 200, {...status, transport: this.deps.feed.transport})
        return
      }
      // POST /v1/send {to, text} | {to, file, caption?}
      case 'POST /v1/send': {
        const body = parse(sendBody, await readJson(req), 'body')
        const {value, reports: made} = await reports.collect(() =>
          body.file === undefined ? client.send(body.to, body.text!) : client.sendFile(body.to, body.file, {caption: body.caption}),
        )
        await answer(res, 201, withReports(value, made))
        return
      }
      // GET /v1/messages?since=C&timeout=MS
      case 'GET /v1/messages': {
        const {since, timeout, ...choice} = parse(messagesQuery, query, 'query')
        const signal = this.whileConnected(res)
        await this.deps.feed.once({since, files: this.filesFor(choice), signal}, timeout, (page) =>
          answer(res, 200, withReports({items: page.items, next: page.next}, page.reports)),
        )
        return
      }
      // GET /v1/messages/stream?since=C, or with Last-Event-ID
      case 'GET /v1/messages/stream': {
        const {since, ...choice} = parse(streamQuery, query, 'query')
        const header = req.headers['last-event-id']
        const resume = since ?? (typeof header === 'string' ? parse(lastEventId, header, 'Last-Event-ID header') : undefined)
        await this.stream(res, {since: resume, files: this.filesFor(choice)})
        return
      }
      // GET /v1/history?with=X&limit=N
      case 'GET /v1/history': {
        const {with: peer, limit, ...choice} = parse(historyQuery, query, 'query')
        const {value, reports: made} = await reports.collect(() => client.history(peer, {limit, files: this.deps.files({files: 'none', ...choice})}))
        await answer(res, 200, withReports(value, made))
        return
      }
      // POST /v1/groups {name, members}: created, and its first key made here
      case 'POST /v1/groups': {
        const body = parse(createGroupBody, await readJson(req), 'body')
        const {value, reports: made} = await reports.collect(() => client.createGroup(body.name, body.members))
        await answer(res, 201, withReports(value, made))
        return
      }
      // POST /v1/groups/add {group, user} and /v1/groups/remove {group, user}: the change, and the new epoch's key
      case 'POST /v1/groups/add':
      case 'POST /v1/groups/remove': {
        const body = parse(memberBody, await readJson(req), 'body')
        const change = url.pathname.endsWith('/add') ? () => client.addMember(body.group, body.user) : () => client.removeMember(body.group, body.user)
        const {value, reports: made} = await reports.collect(change)
        await answer(res, 200, withReports(value, made))
        return
      }
      // GET /v1/groups/invitations: the groups I am invited to
      case 'GET /v1/groups/invitations': {
        await answer(res, 200, {invitations: await client.invitations()})
        return
      }
      // POST /v1/groups/join {group}: a member from now on, and the new epoch's key made here
      case 'POST /v1/groups/join': {
        const body = parse(leaveBody, await readJson(req), 'body')
        const {value, reports: made} = await reports.collect(() => client.joinGroup(body.group))
        await answer(res, 200, withReports(value, made))
        return
      }
      // POST /v1/groups/decline {group}
      case 'POST /v1/groups/decline': {
        const body = parse(leaveBody, await readJson(req), 'body')
        await answer(res, 200, await client.declineGroup(body.group))
        return
      }
      // POST /v1/groups/leave {group}
      case 'POST /v1/groups/leave': {
        const body = parse(leaveBody, await readJson(req), 'body')
        await answer(res, 200, await client.leaveGroup(body.group))
        return
      }
      // POST /v1/keys/trust {user, fingerprint}
      case 'POST /v1/keys/trust': {
        const body = parse(trustBody, await readJson(req), 'body')
        await answer(res, 200, await client.trust(body.user, body.fingerprint))
        return
      }
      // POST /v1/shutdown
      case 'POST /v1/shutdown': {
        await answer(res, 202, {stopping: true})
        this.deps.onShutdown()
        return
      }
      default:
        throw new DaemonError(404, 'FC_ROUTE_NOT_FOUND', `No route for ${req.method} ${url.pathname}.`)
    }
  }

  /** Server-sent events: each item as `event: message` (or the group event's type), then `id: <next>` to resume from. */
  private async stream(res: ServerResponse, reading: {since?: number; files?: ReceiveFilesOptions}): Promise<void> {
    const signal = this.whileConnected(res)
    res.writeHead(200, {'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', 'x-accel-buffering': 'no'})
    res.write(': connected\n\n')
    const heartbeat = setInterval(() => res.destroyed || res.write(': ping\n\n'), HEARTBEAT_MS)
    let last = reading.since
    try {
      await this.deps.feed.follow(
        {...reading, signal},
        (page) => {
          const text = sseEvents(page, page.next !== last)
          last = page.next
          return text === '' ? Promise.resolve(!signal.aborted) : written(res, text)
        },
        // What came directly (daemon --peer): an event of its own, no `id:` (it moves no cursor).
        (item) => (signal.aborted ? Promise.resolve(false) : written(res, `event: ${eventName(item)}\ndata: ${JSON.stringify(item)}\n\n`)),
      )
    } finally {
      clearInterval(heartbeat)
      if (!res.destroyed) res.end()
    }
  }

  /** Aborted when the client goes away or the daemon stops. */
  private whileConnected(res: ServerResponse): AbortSignal {
    const gone = new AbortController()
    res.once('close', () => gone.abort())
    return AbortSignal.any([gone.signal, this.stopping.signal])
  }

  private filesFor(choice: FileChoice): ReceiveFilesOptions | undefined {
    const {defaultFiles} = this.deps
    return this.deps.files({files: choice.files ?? defaultFiles.files, maxDownload: choice.maxDownload ?? defaultFiles.maxDownload, out: choice.out ?? defaultFiles.out})
  }
}

const digest = (token: string): Buffer => createHash('sha256').update(token).digest()

const withReports = <T extends object>(value: T, reports: unknown[]): T => (reports.length > 0 ? {...value, reports} : value)

/** A page as SSE: its items and reports, then its cursor (also alone, when only the cursor moved). */
function sseEvents(page: Page, moved: boolean): string {
  const events = [
    ...page.reports.map((report) => `event: report\ndata: ${JSON.stringify(report)}\n\n`),
    ...page.items.map((item) => `event: ${eventName(item)}\ndata: ${JSON.stringify(item)}\n\n`),
  ]
  return events.length > 0 || moved ? `${events.join('')}id: ${page.next}\n\n` : ''
}

/** True once `text` is written to the socket, false if the connection went first. */
function written(res: ServerResponse, text: string): Promise<boolean> {
  return new Promise((resolve) => {
    if (res.destroyed) return resolve(false)
    res.write(text, (error) => resolve(!error))
  })
}

/** Answers JSON; true once the whole answer was handed to the socket, false if the client went first. */
function answer(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): Promise<boolean> {
  return new Promise((resolve) => {
    if (res.destroyed) return resolve(false)
    res.once('finish', () => resolve(true))
    res.once('close', () => resolve(res.writableFinished))
    const text = JSON.stringify(body)
    res.writeHead(status, {'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', 'content-length': Buffer.byteLength(text), ...headers})
    res.end(text)
  })
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  if (!/^application\/json\s*(?:;|$)/i.test(req.headers['content-type'] ?? '')) {
    throw new DaemonError(415, 'FC_UNSUPPORTED_MEDIA_TYPE', 'The request body must be application/json.')
  }
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length
    if (size > BODY_LIMIT_BYTES) throw new DaemonError(413, 'FC_PAYLOAD_TOO_LARGE', `The request body exceeds the limit of ${BODY_LIMIT_BYTES} bytes; send large texts as a file.`)
    chunks.push(chunk)
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown
  } catch {
    throw new DaemonError(400, 'FC_MALFORMED_JSON', 'The request body is not valid JSON.')
  }
}

function parse<T extends z.ZodType>(schema: T, value: unknown, where: string): z.infer<T> {
  const result = schema.safeParse(value)
  if (result.success) return result.data
  const issue = result.error.issues[0]
  const field = issue?.path.length ? `${issue.path.join('.')}: ` : ''
  throw new DaemonError(400, 'FC_VALIDATION', `Invalid ${where}: ${field}${issue?.message ?? 'not valid'}.`)
}
