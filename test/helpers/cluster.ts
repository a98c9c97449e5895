import {loadServerConfig} from '../../server/config.js'
import {type RunningChatServer, startChatServer} from '../../server/main.js'
import {loadSuperserverConfig} from '../../superserver/config.js'
import {type RunningSuperserver, startSuperserver} from '../../superserver/main.js'
import {eventually} from './processes.js'
import {http} from './http.js'

export const CLUSTER_SECRET = 'test-cluster-secret-0123456789abcdef'
/** GET /v1/servers (superserver) and /metrics (both) answer only the cluster secret. */
export const CLUSTER_AUTH: Record<string, string> = {authorization: `Bearer ${CLUSTER_SECRET}`}
/**
 * Short heartbeats so eviction happens within a test: unhealthy after 500 ms,
 * evicted after 800 ms. Not shorter: on two cores, with password hashes and
 * CLI processes running, the suite's own event loop can miss a beat or two.
 */
export const TEST_HEARTBEAT_MS = 100
const TEST_UNHEALTHY_AFTER_BEATS = 5
const TEST_EVICT_AFTER_BEATS = 8

export function testEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return {
    DATABASE_URL: process.env.DATABASE_URL,
    FASTCHAT_CLUSTER_SECRET: CLUSTER_SECRET,
    FASTCHAT_HEARTBEAT_MS: String(TEST_HEARTBEAT_MS),
    FASTCHAT_UNHEALTHY_AFTER_BEATS: String(TEST_UNHEALTHY_AFTER_BEATS),
    FASTCHAT_EVICT_AFTER_BEATS: String(TEST_EVICT_AFTER_BEATS),
    LOG_LEVEL: process.env.LOG_LEVEL ?? 'silent',
    // See test/setup.ts: off, except where rate-limits.test.ts turns them on.
    FASTCHAT_RATE_LIMITS: process.env.FASTCHAT_RATE_LIMITS ?? 'off',
    // Password hashes at 16 MiB and ~40 ms instead of 128 MiB and ~0.4 s: the suite registers and logs in hundreds of
    // times. accounts.test.ts checks the production cost (2^17) and the re-hash on a server left at its default.
    FASTCHAT_SCRYPT_LOG2_N: '14',
    ...extra,
  }
}

/** A real superserver listening on a free port on 127.0.0.1, in this process. */
export function startTestSuperserver(env: NodeJS.ProcessEnv = {}): Promise<RunningSuperserver> {
  return startSuperserver(loadSuperserverConfig({port: 0}, testEnv(env)))
}

/** A real chat server on a free port, registered with `superserverUrl` if given. */
export function startTestServer(superserverUrl?: string, env: NodeJS.ProcessEnv = {}): Promise<RunningChatServer> {
  return startChatServer(loadServerConfig({port: 0, superserverUrl, shutdownGraceMs: 2_000}, testEnv(env)))
}

/** Waits until the superserver lists exactly these URLs as healthy. */
export async function waitForHealthy(superserverUrl: string, urls: string[]): Promise<void> {
  const want = [...urls].sort().join(' ')
  await eventually(async () => {
    const {body} = await http<{servers: {url: string; healthy: boolean}[]}>('GET', `${superserverUrl}/v1/servers`, {headers: CLUSTER_AUTH})
    return body.servers.filter((s) => s.healthy).map((s) => s.url).sort().join(' ') === want
  }, `healthy servers to be ${want}`)
}

/** How many polls and streams are open on a chat server (its fastchat_server_open_listeners gauge). */
export async function openListeners(serverUrl: string): Promise<{poll: number; stream: number}> {
  const {body} = await http<string>('GET', `${serverUrl}/metrics`, {headers: CLUSTER_AUTH})
  const value = (kind: string) => Number(/^fastchat_server_open_listeners\{kind="(\w+)"\} (\d+)$/m.exec(body.split('\n').filter((l) => l.includes(`kind="${kind}"`)).join('\n'))?.[2] ?? 0)
  return {poll: value('poll'), stream: value('stream')}
}

/** Waits until at least `count` listeners of `kind` are open on the server: an event, not a sleep. */
export async function waitForListeners(serverUrl: string, count: number, kind: 'poll' | 'stream' = 'poll'): Promise<void> {
  await eventually(async () => (await openListeners(serverUrl))[kind] >= count, `${count} open ${kind}(s) on ${serverUrl}`)
}
