import {spawn} from 'node:child_process'
import {open, readFile} from 'node:fs/promises'
import {join} from 'node:path'

import {Flags} from '@oclif/core'

import {findDaemon} from '../client/daemon/connection.js'
import {FastChatClient} from '../client/fastchat-client.js'
import {BaseCommand} from './_lib/base-command.js'
import {CliFailure, Exit} from './_lib/errors.js'
import {readPassphrase} from './_lib/prompts.js'

export interface UnlockResult {
  username: string
  /** The agent's process: `fastchat lock` stops it, or it stops itself after `idleTimeoutMs` without use. */
  pid: number
  /** Where it listens: its Unix socket (or its URL, for a profile path too long for a socket). */
  at: string
  /** Null when an agent ran already: its own timeout stands. */
  idleTimeoutMs: number | null
  /** False when an agent or daemon already held the key: nothing was started. */
  started: boolean
}

/** Days, hours, minutes, seconds or milliseconds: `15m`, `8h`, `90s`, `60000`. */
const DURATION = /^(\d+)(ms|s|m|h|d)?$/
const UNIT_MS = {ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000} as const
/** What a timer can wait (about 24 days). */
const MAX_TIMEOUT_MS = 2 ** 31 - 1

export function parseDuration(input: string): number {
  const match = DURATION.exec(input.trim())
  const ms = match ? Number(match[1]) * UNIT_MS[(match[2] ?? 'ms') as keyof typeof UNIT_MS] : Number.NaN
  if (!(ms >= 1_000 && ms <= MAX_TIMEOUT_MS)) throw new CliFailure(`--timeout must be a duration from 1s to 24d, like 15m or 8h (got ${input}).`, Exit.input)
  return ms
}

/** A Unix socket's path is at most 107 bytes on Linux (104 on macOS): a longer profile path gets a loopback port instead. */
const SOCKET_PATH_MAX = 100
/** Unlocking the key again in the agent, and starting it, takes a few seconds on a slow machine. */
const START_TIMEOUT_MS = 60_000

export default class Unlock extends BaseCommand<typeof Unlock> {
  static override summary = 'Unlock your key once, for the commands of the next hours: a background agent holds it until unused for --timeout.'
  static override description =
    'Asks for the passphrase (or takes FASTCHAT_PASSPHRASE) and starts `fastchat daemon` in the background on <profile>/agent.sock, ' +
    'handing it the passphrase through a pipe (never on a command line or in its environment). ' +
    'While it runs, `send`, `inbox` and `history` of this profile ask for no passphrase. ' +
    'It stops by itself once no command used it for --timeout, or at `fastchat lock`. ' +
    'The unlocked key lives in that process’s memory: anyone who can read your profile, or debug your processes, can use it meanwhile. ' +
    'Its messages go to <profile>/agent.log.'

  static override examples = ['<%= config.bin %> unlock', '<%= config.bin %> unlock --timeout 8h', '<%= config.bin %> lock']

  static override flags = {
    timeout: Flags.string({summary: 'Lock again after this long without use: 15m, 8h, or milliseconds.', default: '15m', helpValue: 'DURATION'}),
  }

  async run(): Promise<UnlockResult> {
    const idleTimeoutMs = parseDuration(this.flags.timeout)
    const running = await findDaemon(this.store.dir)
    if (running) {
      this.log(`Already unlocked: a daemon (pid ${running.info.pid}) holds ${running.username}'s key. \`fastchat lock\` locks it.`)
      return {username: running.username, pid: running.info.pid, at: running.info.socket ?? running.info.url, idleTimeoutMs: null, started: false}
    }
    const passphrase = await readPassphrase()
    // Checked here, in the foreground, where a wrong passphrase is said plainly and asked again next time.
    const client = await FastChatClient.open({store: this.store, passphrase: async () => passphrase})
    await client.session.key()
    const pid = await this.startAgent(passphrase, idleTimeoutMs)
    const daemon = await findDaemon(this.store.dir)
    if (!daemon) throw new CliFailure(`The agent (pid ${pid}) started but does not answer.`, Exit.unexpected, `See ${join(this.store.dir, 'agent.log')}.`)
    this.log(`Unlocked ${client.username}'s key until it is unused for ${this.flags.timeout} (agent pid ${pid}). \`fastchat lock\` locks it now.`)
    return {username: client.username, pid, at: daemon.info.socket ?? daemon.info.url, idleTimeoutMs, started: true}
  }

  /** Starts `fastchat daemon` detached, the passphrase on its stdin; resolves with its pid once it serves. */
  private async startAgent(passphrase: string, idleTimeoutMs: number): Promise<number> {
    const socket = join(this.store.dir, 'agent.sock')
    const listen = Buffer.byteLength(socket) <= SOCKET_PATH_MAX ? ['--socket', socket] : ['--port', '0']
    const logFile = join(this.store.dir, 'agent.log')
    const log = await open(logFile, 'a', 0o600)
    const logStart = (await log.stat()).size
    const args = [...process.execArgv, process.argv[1]!, 'daemon', ...listen, '--idle-timeout', String(idleTimeoutMs), '--passphrase-stdin', '--profile', this.store.dir]
    // Secrets stay out of its environment: the passphrase goes through the pipe, once.
    const {FASTCHAT_PASSPHRASE: _passphrase, FASTCHAT_PASSWORD: _password, ...env} = process.env
    const child = spawn(process.execPath, args, {detached: true, stdio: ['pipe', log.fd, log.fd, 'ipc'], env})
    await log.close()
    child.stdin!.end(`${passphrase}\n`)
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('it did not start in time')), START_TIMEOUT_MS)
        child.once('message', () => {
          clearTimeout(timer)
          resolve()
        })
        child.once('exit', (code, signal) => {
          clearTimeout(timer)
          reject(new Error(`it exited (${signal ?? code})`))
        })
      })
    } catch (error) {
      child.kill()
      const said = (await readFile(logFile, 'utf8').catch(() => '')).slice(logStart).trim().split('\n').findLast((line) => line.startsWith('Error: '))
      throw new CliFailure(`The agent did not start: ${said?.slice('Error: '.length) ?? (error as Error).message}`, Exit.unexpected, `See ${logFile}.`)
    }
    if (child.connected) child.disconnect()
    child.unref()
    return child.pid!
  }
}
