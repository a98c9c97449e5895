import {type ChildProcess, spawn} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import {once} from 'node:events'
import {closeSync, openSync, writeSync} from 'node:fs'
import {mkdir, readFile, rm, writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import {createInterface} from 'node:readline'

import {ensureDatabase} from '../storage/admin.js'
import {openDatabase, redactDatabaseUrl} from '../storage/data-source.js'
import {defaultDataDir, type EmbeddedDatabase, startEmbeddedDatabase} from '../storage/embedded.js'

/**
 * `fastchat up`: a whole cluster on one machine — a database (embedded unless
 * DATABASE_URL is set), one superserver and N chat servers, each a real child
 * process. While it runs, `<dataDir>/cluster.json` tells other `fastchat`
 * processes on this machine how to join (database URL, cluster secret).
 */
export interface LocalClusterOptions {
  servers: number
  /** Superserver port; chat servers take the following ones. 0: free ports. */
  port: number
  dataDir?: string
  /** Use this PostgreSQL instead of the embedded one. */
  databaseUrl?: string
  /** How to start a `fastchat` child: node arguments before the command. */
  entry: string[]
  logLevel: string
  /** Notices for a person (a child restarted), and the children's own log lines when there is no logFile. */
  log: (line: string) => void
  /**
   * Append the children's log lines (pino's JSON, each prefixed with the child's
   * name), postgres's and the notices to this file instead: a terminal gets the
   * cluster's own words, not the JSON of every process.
   */
  logFile?: string
  /** With logFile: hand the children's lines to `log` too. */
  verbose?: boolean
  /** The superserver's --strategy (default: its own, FASTCHAT_STRATEGY or round-robin). */
  strategy?: string
}

export interface LocalCluster {
  superserverUrl: string
  serverUrls: string[]
  /** What GET /v1/servers and /metrics want as a bearer token. */
  clusterSecret: string
  databaseShown: string
  dataDir: string
  /** The embedded cluster's directory when it is not `<dataDir>/postgres` (as root, storage/postgres-dir.ts), and why. */
  postgresElsewhere?: {path: string; closed?: string}
  /** The chat servers' process ids, in the order of serverUrls (a restarted one's new id; undefined while it is down). */
  serverPids(): Array<number | undefined>
  stop(): Promise<void>
}

export interface LocalClusterFile {
  pid: number
  superserverUrl: string
  databaseUrl: string
  clusterSecret: string
}

/** The database the cluster keeps its data in, inside the embedded Postgres. */
const EMBEDDED_DATABASE_NAME = 'fastchat'
/** How long a child gets to print its URL before start-up is declared failed. */
const CHILD_START_TIMEOUT_MS = 20_000
/** How long children get to drain on stop before they are killed. */
const CHILD_STOP_TIMEOUT_MS = 15_000
/** A child that crashes is restarted after this pause, unless the cluster is stopping. */
const RESTART_DELAY_MS = 1_000

export const localClusterFile = (dataDir = defaultDataDir()) => join(dataDir, 'cluster.json')
export const localClusterLogFile = (dataDir = defaultDataDir()) => join(dataDir, 'up.log')

/**
 * The environment a `server` or `superserver` command resolves its settings
 * from: the process environment, falling back to what a running local cluster
 * published. Empty variables count as unset.
 */
export async function environmentWithLocalCluster(env: NodeJS.ProcessEnv = process.env): Promise<NodeJS.ProcessEnv> {
  const local = await readLocalCluster()
  const set = Object.fromEntries(Object.entries(env).filter(([, value]) => value !== undefined && value !== ''))
  if (!local) return set
  return {DATABASE_URL: local.databaseUrl, FASTCHAT_CLUSTER_SECRET: local.clusterSecret, FASTCHAT_SUPERSERVER: local.superserverUrl, ...set}
}

/** What a running `fastchat up` on this machine published, if one is running. */
export async function readLocalCluster(dataDir = defaultDataDir()): Promise<LocalClusterFile | undefined> {
  try {
    const file = JSON.parse(await readFile(localClusterFile(dataDir), 'utf8')) as LocalClusterFile
    process.kill(file.pid, 0)
    return file
  } catch {
    return undefined
  }
}

class Child {
  process: ChildProcess | undefined
  url: string | undefined
  private stopping = false

  constructor(
    readonly name: string,
    private readonly args: string[],
    private readonly env: NodeJS.ProcessEnv,
    /** The child's stderr, line by line. */
    private readonly output: (line: string) => void,
    private readonly notice: (line: string) => void,
  ) {}

  async start(): Promise<string> {
    // stdin is a pipe we never write to: when we die it closes, and the child drains and exits.
    const child = spawn(process.execPath, this.args, {env: {...this.env, FASTCHAT_EXIT_WITH_PARENT: '1'}, stdio: ['pipe', 'pipe', 'pipe']})
    this.process = child
    createInterface({input: child.stderr!}).on('line', (line) => this.output(`[${this.name}] ${line}`))
    const lines = createInterface({input: child.stdout!})
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.name} did not start within ${CHILD_START_TIMEOUT_MS} ms`)), CHILD_START_TIMEOUT_MS)
      lines.on('line', (line) => {
        const match = /listening on (https?:\/\/\S+)/.exec(line)
        if (match) {
          clearTimeout(timer)
          resolve(match[1]!)
        }
      })
      child.once('exit', (code, signal) => {
        clearTimeout(timer)
        reject(new Error(`${this.name} exited during start-up (${signal ?? `code ${code}`})`))
      })
    })
    this.url = url
    child.once('exit', (code, signal) => {
      if (this.stopping) return
      this.notice(`[${this.name}] exited unexpectedly (${signal ?? `code ${code}`}); restarting in ${RESTART_DELAY_MS} ms`)
      setTimeout(() => {
        if (!this.stopping) this.start().catch((error: Error) => this.notice(`[${this.name}] restart failed: ${error.message}`))
      }, RESTART_DELAY_MS)
    })
    return url
  }

  async stop(): Promise<void> {
    this.stopping = true
    const child = this.process
    if (!child || child.exitCode !== null || child.signalCode !== null) return
    const exited = once(child, 'exit')
    child.kill('SIGTERM')
    const timer = setTimeout(() => child.kill('SIGKILL'), CHILD_STOP_TIMEOUT_MS)
    await exited
    clearTimeout(timer)
  }
}

async function waitForRegistrations(superserverUrl: string, clusterSecret: string, count: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    const response = await fetch(`${superserverUrl}/v1/servers`, {headers: {authorization: `Bearer ${clusterSecret}`}}).catch(() => undefined)
    if (response?.ok) {
      const {servers} = (await response.json()) as {servers: {healthy: boolean}[]}
      if (servers.filter((s) => s.healthy).length >= count) return
    }
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  throw new Error(`the chat servers did not register with the superserver within ${timeoutMs} ms`)
}

export async function startLocalCluster(options: LocalClusterOptions): Promise<LocalCluster> {
  const dataDir = options.dataDir ?? defaultDataDir()
  // Ctrl-C reaches every process of the terminal's group at once, the database
  // included; what the children say while it goes away is noise, not news
  // (the log file still gets it).
  let stopping = false
  let file: number | undefined
  const toFile = (line: string) => {
    if (file !== undefined) writeSync(file, `${line}\n`)
  }
  const notice = (line: string) => {
    toFile(line)
    if (!stopping) options.log(line)
  }
  const output = (line: string) => {
    if (file === undefined) return notice(line)
    toFile(line)
    if (options.verbose) options.log(line)
  }
  let embedded: EmbeddedDatabase | undefined
  const children: Child[] = []
  const stop = async () => {
    stopping = true
    await Promise.all(children.filter((c) => c.name !== 'superserver').map((c) => c.stop()))
    await Promise.all(children.map((c) => c.stop()))
    await embedded?.stop()
    await rm(localClusterFile(dataDir), {force: true})
    if (file !== undefined) closeSync(file)
    file = undefined
  }

  try {
    await mkdir(dataDir, {recursive: true, mode: 0o700})
    // Written synchronously, so that the lines before a failed start are all there to read.
    if (options.logFile) file = openSync(options.logFile, 'a', 0o600)
    toFile(`[up] starting, pid ${process.pid}, ${new Date().toISOString()}`)
    let databaseUrl = options.databaseUrl
    if (!databaseUrl) {
      const onLog = (chunk: string) => chunk.split('\n').forEach((line) => output(`[postgres] ${line}`))
      embedded = await startEmbeddedDatabase({dataDir, onLog: file === undefined ? () => undefined : onLog})
      databaseUrl = await ensureDatabase(embedded.url, EMBEDDED_DATABASE_NAME)
    }
    // Migrate once here, so the children start on an up-to-date schema.
    const db = await openDatabase({url: databaseUrl, poolSize: 2, applicationName: 'fastchat-up'})
    await db.destroy()

    const clusterSecret = process.env.FASTCHAT_CLUSTER_SECRET || randomBytes(24).toString('base64url')
    const env = {...process.env, DATABASE_URL: databaseUrl, FASTCHAT_CLUSTER_SECRET: clusterSecret, LOG_LEVEL: options.logLevel}
    const strategy = options.strategy ? ['--strategy', options.strategy] : []
    const superserver = new Child('superserver', [...options.entry, 'superserver', '--port', String(options.port), ...strategy], env, output, notice)
    children.push(superserver)
    const superserverUrl = await superserver.start()

    for (let i = 1; i <= options.servers; i++) {
      const port = options.port === 0 ? 0 : options.port + i
      children.push(
        new Child(`server-${i}`, [...options.entry, 'server', '--port', String(port), '--superserver', superserverUrl], env, output, notice),
      )
    }
    const serverUrls = await Promise.all(children.slice(1).map((child) => child.start()))
    await waitForRegistrations(superserverUrl, clusterSecret, options.servers, CHILD_START_TIMEOUT_MS)

    const published: LocalClusterFile = {pid: process.pid, superserverUrl, databaseUrl, clusterSecret}
    await writeFile(localClusterFile(dataDir), JSON.stringify(published, null, 2), {mode: 0o600})
    const postgresElsewhere =
      embedded && embedded.postgresDir !== join(dataDir, 'postgres') ? {path: embedded.postgresDir, ...(embedded.closed ? {closed: embedded.closed} : {})} : undefined
    const serverPids = () => children.slice(1).map((child) => (child.process?.exitCode === null && child.process.signalCode === null ? child.process.pid : undefined))
    return {superserverUrl, serverUrls, clusterSecret, databaseShown: redactDatabaseUrl(databaseUrl), dataDir, ...(postgresElsewhere ? {postgresElsewhere} : {}), serverPids, stop}
  } catch (error) {
    await stop()
    throw error
  }
}
