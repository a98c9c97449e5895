import {z} from 'zod'

import {databaseSettings, databaseTimeouts, httpUrl, logLevel, milliseconds, port, resolveSettings, type Resolved} from '../server/settings.js'

/** The balancing strategies of GET /v1/assign (docs/architecture.md, "Balancing"). */
export const ASSIGN_STRATEGIES = ['round-robin', 'least-loaded'] as const
export type AssignStrategy = (typeof ASSIGN_STRATEGIES)[number]

export const superserverSettings = {
  port: {env: 'PORT', doc: 'TCP port to listen on; 0 picks a free one.', schema: port.default(4000)},
  host: {env: 'FASTCHAT_HOST', doc: 'Address to listen on.', schema: z.string().min(1).default('127.0.0.1')},
  publicUrl: {env: 'FASTCHAT_PUBLIC_URL', doc: 'URL clients reach this process at (default: http://host:port).', schema: httpUrl.optional()},
  ...databaseSettings,
  clusterSecret: {
    env: 'FASTCHAT_CLUSTER_SECRET',
    doc: 'Shared secret chat servers present to register and heartbeat (at least 16 characters).',
    schema: z.string().min(16, 'must be at least 16 characters'),
    secret: true,
  },
  heartbeatMs: {
    env: 'FASTCHAT_HEARTBEAT_MS',
    doc: 'How often chat servers heartbeat; told to each server when it registers.',
    schema: milliseconds.default(2_000),
  },
  unhealthyAfterBeats: {
    env: 'FASTCHAT_UNHEALTHY_AFTER_BEATS',
    doc: 'Missed heartbeats after which a server is no longer assigned.',
    schema: z.coerce.number().min(1).default(2.5),
  },
  evictAfterBeats: {
    env: 'FASTCHAT_EVICT_AFTER_BEATS',
    doc: 'Missed heartbeats after which a server is removed from the registry.',
    schema: z.coerce.number().min(1).default(5),
  },
  strategy: {
    env: 'FASTCHAT_STRATEGY',
    doc: 'How GET /v1/assign picks a chat server: round-robin over healthy ones, or least-loaded (fewest open polls and streams from the heartbeats, plus the clients assigned to it since its last one).',
    schema: z.enum(ASSIGN_STRATEGIES).default('round-robin'),
  },
  logLevel: {env: 'LOG_LEVEL', doc: 'Log level (logs are JSON on stderr).', schema: logLevel.default('info')},
}

export type SuperserverConfig = Resolved<typeof superserverSettings>

export function loadSuperserverConfig(flags: Partial<Record<keyof SuperserverConfig, unknown>> = {}, env = process.env): SuperserverConfig {
  const config = resolveSettings(superserverSettings, flags, env)
  if (config.evictAfterBeats < config.unhealthyAfterBeats) {
    throw new Error('FASTCHAT_EVICT_AFTER_BEATS must not be smaller than FASTCHAT_UNHEALTHY_AFTER_BEATS.')
  }
  databaseTimeouts(config)
  return config
}
