import type {Logger} from 'pino'
import {Agent, request} from 'undici'

/**
 * Keeps this chat server in the superserver's registry: registers (retrying
 * while the superserver is unreachable, so servers may start first), sends a
 * heartbeat every `heartbeatMs` the superserver asked for, registers again if
 * it was evicted, and deregisters on stop.
 */
export interface MembershipOptions {
  superserverUrl: string
  clusterSecret: string
  /** The URL clients are sent to. */
  publicUrl: string
  /** A registry call (connect, then answer) that takes longer fails and is retried (FASTCHAT_REGISTRY_TIMEOUT_MS). */
  timeoutMs?: number
  logger: Logger
  stats: () => Record<string, number | string | boolean>
  isDraining: () => boolean
  /** Whether this server's database answers now (a check bounded by its timeout); one that does not is not assigned new clients. */
  databaseOk?: () => Promise<boolean>
}

/** Backoff while the superserver is unreachable: 200 ms doubling to 5 s. */
const RETRY_MIN_MS = 200
const RETRY_MAX_MS = 5_000
/** A registry call that takes longer than this is treated as failed (the default of FASTCHAT_REGISTRY_TIMEOUT_MS). */
const REQUEST_TIMEOUT_MS = 3_000

export class ClusterMembership {
  id: string | undefined
  private heartbeatMs = 2_000
  private timer: NodeJS.Timeout | undefined
  private stopped = false
  private retryMs = RETRY_MIN_MS
  private readonly agent: Agent
  private readonly timeoutMs: number

  constructor(private readonly options: MembershipOptions) {
    this.timeoutMs = options.timeoutMs ?? REQUEST_TIMEOUT_MS
    // The connect timeout too: undici's default is 10 s, several heartbeats.
    this.agent = new Agent({keepAliveTimeout: 30_000, connections: 2, connect: {timeout: this.timeoutMs}})
  }

  start(): void {
    void this.tick()
  }

  /** Tells the superserver at once (used when draining starts). */
  async beatNow(): Promise<void> {
    if (this.id) await this.heartbeat(this.id).catch(() => undefined)
  }

  async stop(): Promise<void> {
    this.stopped = true
    clearTimeout(this.timer)
    if (this.id) {
      await this.call('DELETE', `/v1/servers/${this.id}`).catch((error: unknown) =>
        this.options.logger.warn({err: error}, 'could not deregister; the superserver will evict this server'),
      )
    }
    await this.agent.close()
  }

  private schedule(ms: number): void {
    if (this.stopped) return
    this.timer = setTimeout(() => void this.tick(), ms)
    this.timer.unref()
  }

  private async tick(): Promise<void> {
    const registering = !this.id
    try {
      if (!this.id) {
        const answer = (await this.call('POST', '/v1/servers', {url: this.options.publicUrl})) as {id: string; heartbeatMs: number}
        this.id = answer.id
        this.heartbeatMs = answer.heartbeatMs
        this.options.logger.info({id: this.id, superserver: this.options.superserverUrl}, 'registered with superserver')
      } else {
        await this.heartbeat(this.id)
      }
      this.retryMs = RETRY_MIN_MS
      this.schedule(this.heartbeatMs)
    } catch (error) {
      if (this.stopped) return
      const status = (error as {status?: number}).status
      if (registering && status !== undefined && status >= 400 && status < 500) {
        // The superserver refused this server (a URL it cannot hand out, a wrong secret): retrying will not help until an operator acts.
        this.options.logger.error({err: error, url: this.options.publicUrl, retryInMs: RETRY_MAX_MS}, 'the superserver refused to register this server')
        this.schedule(RETRY_MAX_MS)
        return
      }
      this.options.logger.warn({err: error, retryInMs: this.retryMs}, 'superserver unreachable')
      this.schedule(this.retryMs)
      this.retryMs = Math.min(this.retryMs * 2, RETRY_MAX_MS)
    }
  }

  private async heartbeat(id: string): Promise<void> {
    try {
      const database = ((await this.options.databaseOk?.()) ?? true) ? 'ok' : 'unavailable'
      await this.call('PUT', `/v1/servers/${id}/heartbeat`, {draining: this.options.isDraining(), database, stats: this.options.stats()})
    } catch (error) {
      if ((error as {status?: number}).status === 404) {
        this.options.logger.warn({id}, 'evicted by the superserver; registering again')
        this.id = undefined
      }
      throw error
    }
  }

  private async call(method: 'POST' | 'PUT' | 'DELETE', path: string, body?: unknown): Promise<unknown> {
    const response = await request(this.options.superserverUrl + path, {
      method,
      dispatcher: this.agent,
      headers: {authorization: `Bearer ${this.options.clusterSecret}`, ...(body ? {'content-type': 'application/json'} : {})},
      body: body ? JSON.stringify(body) : undefined,
      headersTimeout: this.timeoutMs,
      bodyTimeout: this.timeoutMs,
    })
    const text = await response.body.text()
    if (response.statusCode >= 400) {
      const detail = problemDetail(text)
      throw Object.assign(new Error(`superserver answered ${response.statusCode} to ${method} ${path}${detail ? `: ${detail}` : ''}`), {status: response.statusCode})
    }
    return text ? JSON.parse(text) : undefined
  }
}

/** The `detail` of a problem answer, to say in the log why the superserver refused. */
function problemDetail(text: string): string | undefined {
  try {
    const {detail} = JSON.parse(text) as {detail?: unknown}
    return typeof detail === 'string' ? detail.slice(0, 300) : undefined
  } catch {
    return undefined
  }
}
