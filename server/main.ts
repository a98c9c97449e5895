import {createApp} from './app.js'
import {ClusterMembership} from './cluster-membership.js'
import type {ServerConfig} from './config.js'
import {createHttpMetrics} from './http/observability.js'
import {listen} from './http/listen.js'
import {createLogger} from './logger.js'
import {openDatabase} from '../storage/data-source.js'

export interface RunningChatServer {
  url: string
  port: number
  /** The registry id, once registered. */
  readonly id: string | undefined
  /** Drains: stop accepting, answer open requests, deregister, close the database. */
  close(): Promise<void>
}

export async function startChatServer(config: ServerConfig): Promise<RunningChatServer> {
  const logger = createLogger('server', config.logLevel)
  const db = await openDatabase({url: config.databaseUrl, poolSize: config.poolSize, applicationName: 'fastchat-server'})
  const lifecycle = {draining: false}
  const metrics = createHttpMetrics('fastchat_server')
  const app = createApp({db, logger, lifecycle, metrics})
  const listening = await listen(app, config.port, config.host)
  const url = config.publicUrl ?? listening.url

  const membership =
    config.superserverUrl && config.clusterSecret
      ? new ClusterMembership({
          superserverUrl: config.superserverUrl,
          clusterSecret: config.clusterSecret,
          publicUrl: url,
          logger,
          isDraining: () => lifecycle.draining,
          stats: () => ({openPolls: 0}),
        })
      : undefined
  membership?.start()
  logger.info({url}, 'chat server listening')

  let closing: Promise<void> | undefined
  return {
    url,
    port: listening.port,
    get id() {
      return membership?.id
    },
    close() {
      closing ??= (async () => {
        lifecycle.draining = true
        logger.info('draining')
        await membership?.beatNow()
        await listening.close(config.shutdownGraceMs)
        await membership?.stop()
        await db.destroy()
        logger.info('chat server stopped')
        logger.flush()
      })()
      return closing
    },
  }
}
