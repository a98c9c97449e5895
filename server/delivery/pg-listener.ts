import type {Logger} from 'pino'
import pg from 'pg'

import {EVENTS_CHANNEL} from '../../storage/repositories/message.repository.js'
import type {DeliveryHub} from './hub.js'

/**
 * Every chat server LISTENs on one dedicated connection; a send commits a
 * NOTIFY naming its recipients, so a poll open on any server wakes within
 * milliseconds of the commit. While the connection is down, notifications may
 * be missed, so every open poll re-reads the database once per
 * RECHECK_WHILE_DOWN_MS: losing the listener costs latency, never a message.
 */
const RECHECK_WHILE_DOWN_MS = 1_000
const RECONNECT_MIN_MS = 100
const RECONNECT_MAX_MS = 5_000

export class PgListener {
  private client: pg.Client | undefined
  private recheck: NodeJS.Timeout | undefined
  private reconnectMs = RECONNECT_MIN_MS
  private stopped = false

  constructor(
    private readonly databaseUrl: string,
    private readonly hub: DeliveryHub,
    private readonly logger: Logger,
  ) {}

  get connected(): boolean {
    return this.client !== undefined && this.recheck === undefined
  }

  async start(): Promise<void> {
    await this.connect()
  }

  async stop(): Promise<void> {
    this.stopped = true
    clearInterval(this.recheck)
    await this.client?.end().catch(() => undefined)
  }

  private async connect(): Promise<void> {
    const client = new pg.Client({connectionString: this.databaseUrl, application_name: 'fastchat-listener', connectionTimeoutMillis: 5_000})
    client.on('notification', (message) => {
      if (message.payload) this.hub.notify(message.payload.split(','))
    })
    client.on('error', (error) => this.lost(client, error))
    client.on('end', () => this.lost(client))
    try {
      await client.connect()
      await client.query(`LISTEN ${EVENTS_CHANNEL}`)
    } catch (error) {
      await client.end().catch(() => undefined)
      if (this.stopped) return
      throw error
    }
    this.client = client
    this.reconnectMs = RECONNECT_MIN_MS
    if (this.recheck) {
      clearInterval(this.recheck)
      this.recheck = undefined
      this.logger.info('event listener reconnected')
      // Whatever was committed while we were deaf: let every poll look.
      this.hub.wakeAll()
    }
  }

  private lost(client: pg.Client, error?: Error): void {
    if (this.client !== client || this.stopped) return
    this.client = undefined
    this.logger.warn({err: error}, 'event listener lost its connection; polls re-check every second until it is back')
    this.recheck ??= setInterval(() => this.hub.wakeAll(), RECHECK_WHILE_DOWN_MS)
    this.recheck.unref()
    this.hub.wakeAll()
    void this.retry()
  }

  private async retry(): Promise<void> {
    while (!this.stopped && !this.client) {
      await new Promise((resolve) => setTimeout(resolve, this.reconnectMs))
      this.reconnectMs = Math.min(this.reconnectMs * 2, RECONNECT_MAX_MS)
      await this.connect().catch((error: Error) => this.logger.warn({err: error}, 'event listener could not reconnect'))
    }
  }
}
