import {z} from 'zod'

import {httpUrl, logLevel, milliseconds, onOff, port, resolveSettings, type Resolved} from './settings.js'

export const serverSettings = {
  port: {env: 'PORT', doc: 'TCP port to listen on; 0 picks a free one.', schema: port.default(4001)},
  host: {env: 'FASTCHAT_HOST', doc: 'Address to listen on.', schema: z.string().min(1).default('127.0.0.1')},
  publicUrl: {
    env: 'FASTCHAT_PUBLIC_URL',
    doc: 'URL clients and peers reach this server at (default: http://host:port); registered with the superserver.',
    schema: httpUrl.optional(),
  },
  superserverUrl: {
    env: 'FASTCHAT_SUPERSERVER',
    doc: 'Superserver to register with; without one the server runs alone.',
    schema: httpUrl.optional(),
  },
  databaseUrl: {env: 'DATABASE_URL', doc: 'PostgreSQL connection URL.', schema: z.string().min(1), secret: true},
  clusterSecret: {
    env: 'FASTCHAT_CLUSTER_SECRET',
    doc: 'Shared secret for the superserver and peer servers (at least 16 characters).',
    schema: z.string().min(16, 'must be at least 16 characters').optional(),
    secret: true,
  },
  poolSize: {
    env: 'FASTCHAT_DB_POOL_SIZE',
    doc: 'Database connections per chat server.',
    schema: z.coerce.number().int().min(2).max(200).default(20),
  },
  shutdownGraceMs: {
    env: 'FASTCHAT_SHUTDOWN_GRACE_MS',
    doc: 'On SIGTERM, how long open requests get to finish before their connections are cut.',
    schema: milliseconds.default(10_000),
  },
  sessionTtlHours: {
    env: 'FASTCHAT_SESSION_TTL_HOURS',
    doc: 'How long a login stays valid.',
    schema: z.coerce.number().positive().max(24 * 366).default(24 * 30),
  },
  retentionDays: {
    env: 'FASTCHAT_RETENTION_DAYS',
    doc: 'How long events are kept for polling; an older cursor gets 410 and re-syncs from history.',
    schema: z.coerce.number().positive().max(3650).default(30),
  },
  blobLimitBytes: {
    env: 'FASTCHAT_BLOB_LIMIT_BYTES',
    doc: 'Largest file (encrypted blob) accepted by POST /v1/blobs.',
    schema: z.coerce.number().int().min(1024).max(2 ** 40).default(25 * 1024 * 1024),
  },
  blobGraceHours: {
    env: 'FASTCHAT_BLOB_GRACE_HOURS',
    doc: 'How long an uploaded blob may stay unreferenced by any message before it is deleted.',
    schema: z.coerce.number().positive().max(24 * 365).default(24),
  },
  peerPush: {
    env: 'FASTCHAT_PEER_PUSH',
    doc: 'After a send, wake the peer servers holding the recipients\' polls over HTTP (needs the cluster secret). Off leaves the re-check alone.',
    schema: onOff.default(true),
  },
  recheckMs: {
    env: 'FASTCHAT_RECHECK_MS',
    doc: 'How often parked polls re-read their stream heads (one query per server), the fallback when a peer push is lost; 0 turns it off (tests and benchmarks of peer push alone).',
    schema: z.coerce.number().int().min(0).max(60_000).default(500),
  },
  rateLimits: {
    env: 'FASTCHAT_RATE_LIMITS',
    doc: 'Per-account and per-IP rate limits on login, registration and sending (429 with Retry-After). Off only for tests and benchmarks.',
    schema: onOff.default(true),
  },
  loginsPerMinute: {
    env: 'FASTCHAT_LOGINS_PER_MINUTE',
    doc: 'Login attempts per minute per account (per IP address: three times as many).',
    schema: z.coerce.number().int().min(1).default(10),
  },
  registrationsPerHour: {
    env: 'FASTCHAT_REGISTRATIONS_PER_HOUR',
    doc: 'Registrations per hour per IP address.',
    schema: z.coerce.number().int().min(1).default(60),
  },
  sendsPer10s: {
    env: 'FASTCHAT_SENDS_PER_10S',
    doc: 'Messages, uploads and group changes per 10 seconds per account (per IP address: five times as many).',
    schema: z.coerce.number().int().min(1).default(200),
  },
  maxPollsPerUser: {
    env: 'FASTCHAT_MAX_POLLS_PER_USER',
    doc: 'Open long-polls per user on one server; a new one beyond this answers the oldest (a client\'s new poll always replaces its old one).',
    schema: z.coerce.number().int().min(1).max(10_000).default(16),
  },
  trustProxy: {
    env: 'FASTCHAT_TRUST_PROXY',
    doc: 'Behind a reverse proxy: which X-Forwarded-For hops to trust for the client address (Express "trust proxy": a hop count, addresses, or "loopback"). Unset: none.',
    schema: z
      .string()
      .min(1)
      .transform((value) => (/^\d+$/.test(value) ? Number(value) : value))
      .optional(),
  },
  logLevel: {env: 'LOG_LEVEL', doc: 'Log level (logs are JSON on stderr).', schema: logLevel.default('info')},
}

export type ServerConfig = Resolved<typeof serverSettings>

export function loadServerConfig(flags: Partial<Record<keyof ServerConfig, unknown>> = {}, env = process.env): ServerConfig {
  const config = resolveSettings(serverSettings, flags, env)
  if (config.superserverUrl && !config.clusterSecret) {
    throw new Error('FASTCHAT_CLUSTER_SECRET is required to register with a superserver.')
  }
  return config
}
