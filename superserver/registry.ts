import type {Logger} from 'pino'

import {AppError, UnavailableError} from '../server/services/errors.js'
import type {ChatServerRepository, ChatServerRow} from '../storage/repositories/chat-server.repository.js'
import type {AssignStrategy} from './config.js'

export interface RegistryTiming {
  heartbeatMs: number
  /** A server that has not been heard of for this many heartbeats is not assigned. */
  unhealthyAfterBeats: number
  /** ... and after this many it is removed. */
  evictAfterBeats: number
}

export interface RegistryOptions extends RegistryTiming {
  /** How assign() picks among healthy servers; round-robin when not given. */
  strategy?: AssignStrategy
}

export interface ServerStats {
  openPolls?: number
  /** Open event streams (SSE); a server that does not report it counts as 0. */
  openStreams?: number
  [name: string]: unknown
}

/** The rules of the registry; the repository only stores. */
export class RegistryService {
  constructor(
    private readonly servers: ChatServerRepository,
    private readonly timing: RegistryOptions,
    private readonly logger: Logger,
  ) {}

  get heartbeatMs(): number {
    return this.timing.heartbeatMs
  }

  get strategy(): AssignStrategy {
    return this.timing.strategy ?? 'round-robin'
  }

  private get healthyWithinMs(): number {
    return this.timing.heartbeatMs * this.timing.unhealthyAfterBeats
  }

  async register(url: string): Promise<{id: string; heartbeatMs: number}> {
    const id = await this.servers.register(url)
    this.logger.info({id, url}, 'chat server registered')
    return {id, heartbeatMs: this.timing.heartbeatMs}
  }

  async heartbeat(id: string, draining: boolean, stats: ServerStats, databaseOk = true): Promise<void> {
    const known = await this.servers.heartbeat(id, draining, stats, databaseOk)
    // 404 tells an evicted server to register again.
    if (!known) throw new AppError('FC_SERVER_NOT_REGISTERED', `No chat server ${id} is registered; register again.`)
  }

  async deregister(id: string): Promise<void> {
    await this.servers.deregister(id)
    this.logger.info({id}, 'chat server deregistered')
  }

  /** A healthy server, other than those in `avoid` (where the client just failed) while another is healthy. */
  async assign(avoid: string[] = []): Promise<string> {
    const url =
      this.strategy === 'least-loaded'
        ? await this.servers.assignLeastLoaded(this.healthyWithinMs, avoid)
        : await this.servers.assign(this.healthyWithinMs, avoid)
    if (!url) throw new UnavailableError('FC_NO_SERVER', 'No healthy chat server is available. Try again shortly.', 1)
    return url
  }

  async list(): Promise<ChatServerRow[]> {
    return this.servers.list(this.healthyWithinMs)
  }

  async evictSilent(): Promise<number> {
    const evicted = await this.servers.evict(this.timing.heartbeatMs * this.timing.evictAfterBeats)
    for (const server of evicted) this.logger.warn(server, 'chat server evicted after missed heartbeats')
    return evicted.length
  }
}
