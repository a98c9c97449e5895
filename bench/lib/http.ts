import {performance} from 'node:perf_hooks'
import {setTimeout as sleep} from 'node:timers/promises'

import {Agent, request} from 'undici'

import {MAX_STREAM_EVENT_CHARS} from '../../client/event-stream.js'
import {SseParser} from '../../client/sse-parser.js'
import type {ReceiveMode} from './options.js'

/**
 * The load generator's HTTP side: one undici Agent per scenario (keep-alive,
 * enough connections for every open long-poll), pre-serialised bodies, no
 * per-request logging. Everything here only ever talks to 127.0.0.1.
 */

export interface BenchUser {
  id: string
  username: string
  token: string
  /** The chat server this user talks to. */
  server: string
  /** Last `next` seen by this user's poll. */
  cursor: number
}

export interface BenchEvent {
  seq: number
  type: string
  id?: string
  group?: string
  /** A message's sender. */
  from?: string
}

export class Http {
  readonly agent: Agent

  constructor(connections: number) {
    this.agent = new Agent({
      connections,
      keepAliveTimeout: 30_000,
      // Long-polls last up to a minute; nothing else comes close.
      headersTimeout: 90_000,
      bodyTimeout: 90_000,
      connect: {timeout: 10_000},
    })
  }

  async call<T>(
    method: 'GET' | 'POST' | 'PUT',
    url: string,
    options: {token?: string; body?: string; headers?: Record<string, string>; signal?: AbortSignal} = {},
  ): Promise<{status: number; body: T}> {
    const headers: Record<string, string> = {...options.headers}
    if (options.token) headers.authorization = `Bearer ${options.token}`
    if (options.body !== undefined) headers['content-type'] = 'application/json'
    const response = await request(url, {method, headers, body: options.body, dispatcher: this.agent, signal: options.signal})
    const text = await response.body.text()
    return {status: response.statusCode, body: (text ? JSON.parse(text) : undefined) as T}
  }

  /** Aborts whatever is still open and closes every connection. */
  close(): Promise<void> {
    return this.agent.destroy()
  }
}

/** Sends 1:1 text messages with one fixed, real OpenPGP ciphertext. */
export class MessageSender {
  private readonly ciphertextJson: string
  private count = 0

  constructor(
    private readonly http: Http,
    ciphertext: string,
  ) {
    this.ciphertextJson = JSON.stringify(ciphertext)
  }

  /** Resolves to the message id on 201, else to the status or error code; never rejects. */
  async send(from: BenchUser, to: string, server = from.server): Promise<{id?: string; failure?: string}> {
    const body = `{"to":{"user":${JSON.stringify(to)}},"kind":"text","ciphertext":${this.ciphertextJson}}`
    try {
      const answer = await this.http.call<{id: string}>('POST', `${server}/v1/messages`, {
        token: from.token,
        body,
        // As the CLI does: every send carries an idempotency key.
        headers: {'idempotency-key': `bench-${++this.count}`},
      })
      return answer.status === 201 ? {id: answer.body.id} : {failure: `HTTP ${answer.status}`}
    } catch (error) {
      return {failure: errorCode(error)}
    }
  }
}

export type EventsHandler = (user: BenchUser, events: BenchEvent[], receivedAt: number) => void

/** What both receivers (long-poll loops, event streams) do: one per user, each from the user's cursor. */
export interface Receivers {
  readonly mode: ReceiveMode
  start(user: BenchUser): void
  stop(): Promise<void>
  readonly failures: Failures
  /** Poll answers received (with or without events); for streams, streams the server ended. */
  readonly answers: number
}

export interface ReceiverOptions {
  /** Long-poll timeout (the stream has none). */
  timeoutMs?: number
  /**
   * Called after a failure that says the server is gone or draining (a network
   * error, 503): it may point `user.server` elsewhere, as a client asking the
   * superserver again would. Without it the receiver retries the same server.
   */
  reassign?: (user: BenchUser) => Promise<void>
}

export function receivers(mode: ReceiveMode, http: Http, onEvents: EventsHandler, options: ReceiverOptions = {}): Receivers {
  return mode === 'stream' ? new Streams(http, onEvents, options) : new Pollers(http, onEvents, options)
}

/** After a failure, before trying again: a failing server must not turn a loop into a hot one. */
const RETRY_MS = 200

/** One loop per user, each stopped by aborting its request: what Pollers and Streams share. */
abstract class ReceiverLoops implements Receivers {
  abstract readonly mode: ReceiveMode
  abstract readonly answers: number
  readonly failures = new Failures()
  protected stopped = false
  protected readonly controllers = new Set<AbortController>()
  private readonly loops: Promise<void>[] = []

  start(user: BenchUser): void {
    this.loops.push(this.loop(user))
  }

  protected abstract loop(user: BenchUser): Promise<void>

  async stop(): Promise<void> {
    this.stopped = true
    for (const controller of this.controllers) controller.abort()
    await Promise.allSettled(this.loops)
  }
}

/** One long-poll loop per user, each continuing from the user's cursor. */
export class Pollers extends ReceiverLoops {
  readonly mode = 'poll'
  /** Poll answers received (with or without events). */
  answers = 0
  private readonly timeoutMs: number

  constructor(
    private readonly http: Http,
    private readonly onEvents: EventsHandler,
    private readonly options: ReceiverOptions = {},
  ) {
    super()
    this.timeoutMs = options.timeoutMs ?? 30_000
  }

  protected async loop(user: BenchUser): Promise<void> {
    while (!this.stopped) {
      const controller = new AbortController()
      this.controllers.add(controller)
      try {
        const answer = await this.http.call<{events: BenchEvent[]; next: number}>(
          'GET',
          `${user.server}/v1/events?since=${user.cursor}&timeout=${this.timeoutMs}&limit=1000`,
          {token: user.token, signal: controller.signal},
        )
        const at = performance.now()
        this.answers++
        if (answer.status === 200) {
          if (answer.body.events.length > 0) this.onEvents(user, answer.body.events, at)
          user.cursor = answer.body.next
        } else {
          this.failures.add(`poll HTTP ${answer.status}`)
          await sleep(RETRY_MS)
          if (answer.status === 503) await this.options.reassign?.(user)
        }
      } catch (error) {
        if (this.stopped) break
        this.failures.add(`poll ${errorCode(error)}`)
        await sleep(RETRY_MS)
        await this.options.reassign?.(user).catch(() => undefined)
      } finally {
        this.controllers.delete(controller)
      }
    }
  }

}

/**
 * One event stream per user (`GET /v1/events` with `Accept: text/event-stream`,
 * the wire format of docs/api.md), parsed as it arrives: the events of each
 * chunk go to `onEvents` together, stamped with the chunk's arrival. When the
 * stream ends (the server closed it, superseded it or sent a problem) it is
 * opened again from the last `id:` seen, with `Last-Event-ID`, as EventSource
 * would; after a failure, 200 ms later.
 */
export class Streams extends ReceiverLoops {
  readonly mode = 'stream'
  /** Streams that ended while the bench still wanted them (the server closed them). */
  answers = 0
  /** Streams opened (answered 200). */
  opened = 0

  constructor(
    private readonly http: Http,
    private readonly onEvents: EventsHandler,
    private readonly options: ReceiverOptions = {},
  ) {
    super()
  }

  protected async loop(user: BenchUser): Promise<void> {
    while (!this.stopped) {
      const controller = new AbortController()
      this.controllers.add(controller)
      /** Wait before the next try, and maybe ask for another server: the last one failed, is draining or sent a problem. */
      let failed = false
      try {
        const headers: Record<string, string> = {authorization: `Bearer ${user.token}`, accept: 'text/event-stream'}
        if (user.cursor > 0) headers['last-event-id'] = String(user.cursor)
        const response = await request(`${user.server}/v1/events?since=${user.cursor}`, {method: 'GET', headers, dispatcher: this.http.agent, signal: controller.signal})
        if (response.statusCode !== 200) {
          await response.body.dump()
          this.failures.add(`stream HTTP ${response.statusCode}`)
          failed = true
        } else {
          this.opened++
          const ending = await this.follow(user, response.body)
          if (!this.stopped) {
            this.answers++
            // Superseded: reconnect at once (another stream of ours replaced it); a problem: back off.
            if (ending) this.failures.add(`stream ${ending}`)
            failed = ending === 'problem'
          }
        }
      } catch (error) {
        if (this.stopped) break
        this.failures.add(`stream ${errorCode(error)}`)
        failed = true
      } finally {
        this.controllers.delete(controller)
      }
      if (failed && !this.stopped) {
        await sleep(RETRY_MS)
        await this.options.reassign?.(user).catch(() => undefined)
      }
    }
  }

  /** Reads one stream to its end; says how it ended when the server said so. */
  private async follow(user: BenchUser, body: AsyncIterable<Buffer>): Promise<'superseded' | 'problem' | undefined> {
    // The client library's parser (client/sse-parser.ts): the same reading of the wire as `listen`.
    const parser = new SseParser(MAX_STREAM_EVENT_CHARS)
    let ending: 'superseded' | 'problem' | undefined
    for await (const bytes of body) {
      const at = performance.now()
      let events: BenchEvent[] | undefined
      for (const event of parser.push(bytes)) {
        if (event.type === 'superseded' || event.type === 'problem') ending = event.type
        else if (event.type === 'ready') user.cursor = Math.max(user.cursor, (JSON.parse(event.data) as {next: number}).next)
        else (events ??= []).push(JSON.parse(event.data) as BenchEvent)
        if (event.id !== '') user.cursor = Number(event.id)
      }
      if (events) this.onEvents(user, events, at)
    }
    return ending
  }

}

/** Failures by kind ("HTTP 503", "UND_ERR_SOCKET", ...). */
export class Failures {
  private readonly counts = new Map<string, number>()

  add(kind: string): void {
    this.counts.set(kind, (this.counts.get(kind) ?? 0) + 1)
  }

  get total(): number {
    let sum = 0
    for (const count of this.counts.values()) sum += count
    return sum
  }

  toJSON(): Record<string, number> {
    return Object.fromEntries(this.counts)
  }

  toString(): string {
    return this.total === 0 ? 'none' : [...this.counts].map(([kind, count]) => `${count} × ${kind}`).join(', ')
  }
}

export function errorCode(error: unknown): string {
  const e = error as {code?: string; name?: string; message?: string}
  return e.code ?? e.name ?? String(e.message ?? error)
}

/** Resolves when `done()` holds, or false after `timeoutMs`. */
export async function until(done: () => boolean, timeoutMs: number, stepMs = 5): Promise<boolean> {
  const deadline = performance.now() + timeoutMs
  while (!done()) {
    if (performance.now() > deadline) return false
    await sleep(stepMs)
  }
  return true
}

export {sleep}
