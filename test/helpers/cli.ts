import {type ChildProcess, spawn} from 'node:child_process'
import {once} from 'node:events'
import {mkdtemp, readFile, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {expect} from 'chai'
import type {DataSource} from 'typeorm'

import type {RunningChatServer} from '../../server/main.js'
import {createDataSource} from '../../storage/data-source.js'
import type {RunningSuperserver} from '../../superserver/main.js'
import {PASSWORD, uniqueName} from './api.js'
import {startTestServer, startTestSuperserver, waitForHealthy} from './cluster.js'
import {CLI} from './processes.js'

export const PASSPHRASE = 'a passphrase for the test keys'

export interface CliRun {
  code: number
  stdout: string
  stderr: string
}

/** One error line (`Error: …`, matching `pattern` if given) and nothing else on stderr: no stack trace. */
export function expectOneLineError(result: CliRun, pattern?: RegExp): void {
  const lines = result.stderr.trim().split('\n')
  expect(lines, result.stderr).to.have.length(1)
  expect(lines[0]).to.match(/^Error: /)
  if (pattern) expect(result.stderr).to.match(pattern)
  expect(result.stderr).not.to.match(/\n\s+at |\.(ts|js):\d+/)
}

/** Runs the built CLI to completion. Never rejects on a non-zero exit: tests assert on `code`. */
export async function runCli(args: string[], options: {env?: NodeJS.ProcessEnv; stdin?: string; timeoutMs?: number} = {}): Promise<CliRun> {
  const env: NodeJS.ProcessEnv = {...process.env, ...options.env}
  // The suite may run with DEBUG set; the CLI's error output depends on it.
  if (!options.env?.DEBUG) delete env.DEBUG
  const child = spawn(process.execPath, [CLI, ...args], {env, stdio: ['pipe', 'pipe', 'pipe']})
  let stdout = ''
  let stderr = ''
  child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()))
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
  child.stdin!.end(options.stdin ?? '')
  const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 20_000)
  const [code, signal] = (await once(child, 'exit')) as [number | null, NodeJS.Signals | null]
  clearTimeout(timer)
  return {code: code ?? (signal === 'SIGKILL' ? 137 : 128), stdout, stderr}
}

const homes: string[] = []

/** A person using the CLI: a username and a profile directory of their own. */
export class CliUser {
  private constructor(
    readonly username: string,
    readonly home: string,
    readonly superserver: string,
  ) {}

  static async create(prefix: string, superserver: string): Promise<CliUser> {
    return CliUser.named(uniqueName(prefix), superserver)
  }

  /** A user with exactly this name (most tests want create()'s unique one). */
  static async named(username: string, superserver: string): Promise<CliUser> {
    const home = join(await mkdtemp(join(tmpdir(), 'fastchat-cli-')), 'profile')
    homes.push(home)
    return new CliUser(username, home, superserver)
  }

  env(): NodeJS.ProcessEnv {
    return {FASTCHAT_HOME: this.home, FASTCHAT_PASSWORD: PASSWORD, FASTCHAT_PASSPHRASE: PASSPHRASE, FASTCHAT_SUPERSERVER: this.superserver}
  }

  run(args: string[], options: {stdin?: string; env?: NodeJS.ProcessEnv} = {}): Promise<CliRun> {
    return runCli(args, {stdin: options.stdin, env: {...this.env(), ...options.env}})
  }

  /** Runs with --json, expects success, returns the parsed output. */
  async json<T = any>(args: string[], options: {stdin?: string} = {}): Promise<T> {
    const result = await this.run([...args, '--json'], options)
    if (result.code !== 0) throw new Error(`fastchat ${args.join(' ')} exited ${result.code}:\n${result.stdout}\n${result.stderr}`)
    return JSON.parse(result.stdout) as T
  }

  async register(): Promise<this> {
    await this.json(['register', this.username])
    return this
  }

  file(name: string): string {
    return join(this.home, name)
  }

  async readJson<T = any>(name: string): Promise<T> {
    return JSON.parse(await readFile(this.file(name), 'utf8')) as T
  }

  async writeJson(name: string, value: unknown): Promise<void> {
    await writeFile(this.file(name), JSON.stringify(value, null, 2), {mode: 0o600})
  }
}

export async function removeCliHomes(): Promise<void> {
  for (const home of homes.splice(0)) await rm(join(home, '..'), {recursive: true, force: true})
}

/** A long-running CLI command (listen), with its output so far. */
export function spawnCli(args: string[], env: NodeJS.ProcessEnv): {child: ChildProcess; stdout: () => string; stderr: () => string} {
  const child = spawn(process.execPath, [CLI, ...args], {env: {...process.env, ...env}, stdio: ['ignore', 'pipe', 'pipe']})
  let stdout = ''
  let stderr = ''
  child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()))
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
  return {child, stdout: () => stdout, stderr: () => stderr}
}

export interface TwoUserCluster {
  db: DataSource
  superserver: RunningSuperserver
  servers: RunningChatServer[]
  alice: CliUser
  bob: CliUser
}

/**
 * A superserver, two chat servers and two users registered through the CLI.
 * Registered one after the other, the superserver's round-robin puts alice and
 * bob on different servers.
 */
/** `env`: settings of both chat servers (startTestServer). */
export async function startTwoUserCluster(env: Record<string, string> = {}): Promise<TwoUserCluster> {
  const db = await createDataSource({url: process.env.DATABASE_URL!}).initialize()
  const superserver = await startTestSuperserver()
  const servers: RunningChatServer[] = []
  try {
    servers.push(await startTestServer(superserver.url, env), await startTestServer(superserver.url, env))
    await waitForHealthy(superserver.url, servers.map((s) => s.url))
    const alice = await CliUser.create('alice', superserver.url)
    const bob = await CliUser.create('bob', superserver.url)
    await alice.register()
    await bob.register()
    return {db, superserver, servers, alice, bob}
  } catch (error) {
    // A cluster that failed to start must not stay registered and running into the next test file.
    await stopTwoUserCluster({db, superserver, servers})
    throw error
  }
}

/** Stops what startTwoUserCluster started; safe after a start that failed (mocha still runs `after`). */
export async function stopTwoUserCluster(cluster: Partial<Pick<TwoUserCluster, 'db' | 'superserver' | 'servers'>>): Promise<void> {
  await Promise.all((cluster.servers ?? []).map((s) => s.close()))
  await cluster.superserver?.close()
  if (cluster.db?.isInitialized) await cluster.db.destroy()
  await removeCliHomes()
}
