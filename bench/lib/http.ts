import {performance} from 'node:perf_hooks'
import {setTimeout as sleep} from 'node:timers/promises'

import {Agent, request} from 'undici'

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

/** One long-poll loop per user, each continuing from the user's cursor. */
export class Pollers {
  private stopped = false
  private readonly controllers = new Set<AbortController>()
  private readonly loops: Promise<void>[] = []
  readonly failures = new Failures()
  /** Poll answers received (with or without events). */
  answers = 0

  constructor(
    private readonly http: Http,
    private readonly onEvents: EventsHandler,
    private readonly timeoutMs = 30_000,
  ) {}

  start(user: BenchUser): void {
    this.loops.push(this.loop(user))
  }

  private async loop(user: BenchUser): Promise<void> {
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
          await sleep(200)
        }
      } catch (error) {
        if (this.stopped) break
        this.failures.add(`poll ${errorCode(error)}`)
        await sleep(200)
      } finally {
        this.controllers.delete(controller)
      }
    }
  }

  async stop(): Promise<void> {
    this.stopped = true
    for (const controller of this.controllers) controller.abort()
    await Promise.allSettled(this.loops)
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
