import type {DataSource} from 'typeorm'

import {listen} from '../server/http/listen.js'
import {createLogger} from '../server/logger.js'
import {databaseTimeouts} from '../server/settings.js'
import {openDatabase} from '../storage/data-source.js'
import {ChatServerRepository} from '../storage/repositories/chat-server.repository.js'
import {createSuperserverApp} from './app.js'
import type {SuperserverConfig} from './config.js'
import {RegistryService} from './registry.js'

export interface RunningSuperserver {
  url: string
  port: number
  close(): Promise<void>
}

/** Opens the database, serves the registry and evicts silent servers until closed. */
export async function startSuperserver(config: SuperserverConfig, dataSource?: DataSource): Promise<RunningSuperserver> {
  const logger = createLogger('superserver', config.logLevel)
  const ownsDatabase = dataSource === undefined
  const db = dataSource ?? (await openDatabase({url: config.databaseUrl, poolSize: 5, applicationName: 'fastchat-superserver', timeouts: databaseTimeouts(config)}))
  const registry = new RegistryService(new ChatServerRepository(db), config, logger)
  const app = createSuperserverApp({registry, logger}, config)
  const listening = await listen(app, config.port, config.host)

  // Every superserver sweeps; deleting an already-deleted row is harmless.
  const sweeper = setInterval(() => {
    registry.evictSilent().catch((error: unknown) => logger.warn({err: error}, 'eviction sweep failed'))
  }, config.heartbeatMs)
  sweeper.unref()

  const url = config.publicUrl ?? listening.url
  logger.info({url}, 'superserver listening')
  let closing: Promise<void> | undefined
  return {
    url,
    port: listening.port,
    close() {
      closing ??= (async () => {
        clearInterval(sweeper)
        await listening.close()
        if (ownsDatabase) await db.destroy()
        logger.info('superserver stopped')
        logger.flush()
      })()
      return closing
    },
  }
}
