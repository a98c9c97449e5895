import {z} from 'zod'

import {RECEIPT_FLUSH_MS_DEFAULT} from './delivery/acks.js'
import {LAZY_EVENTS_MS} from './delivery/delivery.js'
import {MAILBOX_KEEP_MS} from './delivery/registry.js'
import {databaseSettings, databaseTimeouts, httpUrl, logLevel, milliseconds, onOff, port, resolveSettings, type Resolved} from './settings.js'

export const serverSettings = {
  port: {env: 'PORT', doc: 'TCP port to listen on; 0 picks a free one.', schema: port.default(4001)},
  host: {
    env: 'FASTCHAT_HOST',
    doc: 'Address to listen on; a wildcard (0.0.0.0, ::) listens on every interface, and without a public URL the server advertises the address it reaches the superserver from.',
    schema: z.string().min(1).default('127.0.0.1'),
  },
  publicUrl: {
    env: 'FASTCHAT_PUBLIC_URL',
    doc: 'URL clients and peers reach this server at (default: http://host:port, or for a wildcard host the address it reaches the superserver from); registered with the superserver.',
    schema: httpUrl.optional(),
  },
  superserverUrl: {
    env: 'FASTCHAT_SUPERSERVER',
    doc: 'Superserver to register with; without one the server runs alone.',
    schema: httpUrl.optional(),
  },
  ...databaseSettings,
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
  sessionIdleHours: {
    env: 'FASTCHAT_SESSION_IDLE_HOURS',
    doc: 'A login not used for this long ends before its time (its use is recorded at most once an hour, so at least 2).',
    schema: z.coerce.number().min(2).max(24 * 366).default(24 * 14),
  },
  passwordHashesAtOnce: {
    env: 'FASTCHAT_PASSWORD_HASHES_AT_ONCE',
    doc: 'Password hashes (scrypt, 128 MiB and ~0.4 s each) one server computes at once; 25 more per slot may wait, beyond that logins get 503.',
    schema: z.coerce.number().int().min(1).max(64).default(2),
  },
  passwordScryptLog2N: {
    env: 'FASTCHAT_SCRYPT_LOG2_N',
    doc:
      'The scrypt cost of new password hashes, as log2 of N (17: 128 MiB and ~0.4 s, the OWASP minimum). Lower only for a test cluster: ' +
      'each step down halves what a guesser with the database spends. Hashes keep their own cost; a login re-hashes one that differs.',
    schema: z.coerce.number().int().min(14).max(18).default(17),
  },
  deviceLinkTtlMs: {
    env: 'FASTCHAT_DEVICE_LINK_TTL_MS',
    doc: 'How long a device link code (`fastchat device link`) waits for its approval.',
    schema: z.coerce.number().int().min(1_000).max(3_600_000).default(300_000),
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
  storageQuotaBytes: {
    env: 'FASTCHAT_STORAGE_QUOTA_BYTES',
    doc: 'Per-user storage quota: the bytes of the blobs a user uploaded that still exist; an upload past it is refused with 413.',
    schema: z.coerce.number().int().min(1024).max(2 ** 50).default(1024 ** 3),
  },
  uploadPoolSize: {
    env: 'FASTCHAT_UPLOAD_POOL_SIZE',
    doc: 'Database connections set apart for uploads (each holds one for its whole transaction), so slow uploads never starve the main pool.',
    schema: z.coerce.number().int().min(1).max(200).default(8),
  },
  uploadsPerUser: {
    env: 'FASTCHAT_UPLOADS_PER_USER',
    doc: 'Uploads one user may have in progress on one server; more answer 429.',
    schema: z.coerce.number().int().min(1).max(1_000).default(2),
  },
  downloadsPerUser: {
    env: 'FASTCHAT_DOWNLOADS_PER_USER',
    doc: 'Downloads one user may have in progress on one server; more answer 429.',
    schema: z.coerce.number().int().min(1).max(1_000).default(4),
  },
  transferIdleMs: {
    env: 'FASTCHAT_TRANSFER_IDLE_MS',
    doc: 'An upload or download during which no byte moves for this long is cut (an upload answers 408 and is rolled back).',
    schema: milliseconds.default(30_000),
  },
  transferTimeoutMs: {
    env: 'FASTCHAT_TRANSFER_TIMEOUT_MS',
    doc: 'Longest an upload or download may take in all, however steadily it moves (Node cuts a request body at 300 s anyway).',
    schema: milliseconds.default(300_000),
  },
  healthTimeoutMs: {
    env: 'FASTCHAT_HEALTH_TIMEOUT_MS',
    doc: 'How long the database check of /healthz and the heartbeat (SELECT 1) may take before the database counts as unusable.',
    schema: milliseconds.default(1_000),
  },
  healthCacheMs: {
    env: 'FASTCHAT_HEALTH_CACHE_MS',
    doc: 'How long a database check is reused by /healthz, so that asking often costs one query per period (heartbeats always check afresh).',
    schema: milliseconds.default(2_000),
  },
  pollMaxBytes: {
    env: 'FASTCHAT_POLL_MAX_BYTES',
    doc: 'Most bytes of events one poll answers (ciphertext and payloads; at least one event, however large), so polls cannot exhaust memory.',
    schema: z.coerce.number().int().min(1024).max(64 * 1024 * 1024).default(1024 * 1024),
  },
  pollReadsPerUser: {
    env: 'FASTCHAT_POLL_READS_PER_USER',
    doc: 'Event reads of one user in flight on one server at once; further polls wait their turn.',
    schema: z.coerce.number().int().min(1).max(100).default(2),
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
  peerTimeoutMs: {
    env: 'FASTCHAT_PEER_TIMEOUT_MS',
    doc: 'A push to a peer chat server (connect, then answer) that takes longer is abandoned and counted as failed; the peer\'s re-check delivers instead, so this only bounds the latency a dead peer adds.',
    schema: milliseconds.default(1_000),
  },
  registryTimeoutMs: {
    env: 'FASTCHAT_REGISTRY_TIMEOUT_MS',
    doc: 'A call to the superserver (registration, heartbeat; connect, then answer) that takes longer fails and is retried; under a heartbeat, so one slow call does not cost the server its place.',
    schema: milliseconds.default(3_000),
  },
  streamHeartbeatMs: {
    env: 'FASTCHAT_STREAM_HEARTBEAT_MS',
    doc: 'An event stream (GET /v1/events as text/event-stream) with nothing to say writes a heartbeat this often, so proxies keep it and clients notice a dead one.',
    schema: z.coerce.number().int().min(100).max(60_000).default(15_000),
  },
  recheckMs: {
    env: 'FASTCHAT_RECHECK_MS',
    doc: 'How often parked polls re-read their stream heads (one query per server), the fallback when a peer push is lost; 0 turns it off (tests and benchmarks of peer push alone).',
    schema: z.coerce.number().int().min(0).max(60_000).default(500),
  },
  lazyEventsMs: {
    env: 'FASTCHAT_LAZY_EVENTS_MS',
    doc: 'How long a long-poll whose only news is receipts or presence events waits for a message to answer with them (they ride along); 0 answers them at once.',
    schema: z.coerce.number().int().min(0).max(10_000).default(LAZY_EVENTS_MS),
  },
  mailboxMs: {
    env: 'FASTCHAT_MAILBOX_MS',
    doc: 'How long a server keeps what is committed for a user between two of their polls, for the next poll to answer from memory instead of reading it back (at most 200 events, 256 KiB per user); 0 turns it off (every such poll reads).',
    schema: z.coerce.number().int().min(0).max(60_000).default(MAILBOX_KEEP_MS),
  },
  rateLimits: {
    env: 'FASTCHAT_RATE_LIMITS',
    doc: 'Per-account and per-IP rate limits on login, registration and sending (429 with Retry-After). Off only for tests and benchmarks.',
    schema: onOff.default(true),
  },
  loginsPerMinute: {
    env: 'FASTCHAT_LOGINS_PER_MINUTE',
    doc: 'Password checks per minute per IP address, right or wrong (a login refused by the failure limits below is not checked or counted).',
    schema: z.coerce.number().int().min(1).default(30),
  },
  loginFreeFailures: {
    env: 'FASTCHAT_LOGIN_FREE_FAILURES',
    doc: 'Failed logins per (account, IP address) answered at once; from the last of them on, each failure makes the pair wait 1 s, 2 s, 4 s... before the next try. A success clears the pair.',
    schema: z.coerce.number().int().min(1).max(1_000).default(5),
  },
  loginBackoffMaxSeconds: {
    env: 'FASTCHAT_LOGIN_BACKOFF_MAX_SECONDS',
    doc: 'Longest wait a (account, IP address) pair is given after failed logins.',
    schema: z.coerce.number().int().min(1).max(86_400).default(900),
  },
  loginFailuresPerIpHour: {
    env: 'FASTCHAT_LOGIN_FAILURES_PER_IP_HOUR',
    doc: 'Failed logins per hour per IP address, over all accounts; beyond, that address may not log in until the hour is over.',
    schema: z.coerce.number().int().min(1).default(50),
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
  presenceOfflineMs: {
    env: 'FASTCHAT_PRESENCE_OFFLINE_MS',
    doc:
      'A user is announced offline this long after their last poll or stream was recorded (presence rows are refreshed every third of it, at most every 30 s). ' +
      'Keep it above the longest poll (60 s), or a client waiting in one is seen to leave; lower only for tests.',
    schema: z.coerce.number().int().min(1_000).max(3_600_000).default(90_000),
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
  deliveryReceipts: {
    env: 'FASTCHAT_DELIVERY_RECEIPTS',
    doc: 'Delivered receipts: what polls acknowledge (their cursor) and streams write becomes a receipt.delivered event for the messages\' senders. Off: none are made (read receipts, end-to-end encrypted, still pass).',
    schema: onOff.default(true),
  },
  receiptFlushMs: {
    env: 'FASTCHAT_RECEIPT_FLUSH_MS',
    doc: 'How often the acknowledgements of all users are written and turned into delivered receipts, and how long read receipts to one user are gathered into one receipt.read event: the most a receipt waits on this server.',
    schema: z.coerce.number().int().min(10).max(60_000).default(RECEIPT_FLUSH_MS_DEFAULT),
  },
}

export type ServerConfig = Resolved<typeof serverSettings>

export function loadServerConfig(flags: Partial<Record<keyof ServerConfig, unknown>> = {}, env = process.env): ServerConfig {
  const config = resolveSettings(serverSettings, flags, env)
  if (config.superserverUrl && !config.clusterSecret) {
    throw new Error('FASTCHAT_CLUSTER_SECRET is required to register with a superserver.')
  }
  databaseTimeouts(config)
  return config
}
