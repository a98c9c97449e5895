import type {CliUser} from './cli.js'
import type {HostProcess, Hosts} from './netns.js'
import {CLI, eventually} from './processes.js'

/*
 * The CLI run on the hosts of test/helpers/netns.ts: servers that are waited
 * for until they listen, one-shot commands with --json, and long-running ones
 * (listen) whose JSON lines a test waits on.
 */

/** Starts `fastchat <args>` on a host and resolves once it prints the URL it listens on. */
export async function startFastchatIn(hosts: Hosts, host: string, args: string[], env: NodeJS.ProcessEnv): Promise<HostProcess> {
  const started = hosts.spawn(host, [process.execPath, CLI, ...args], env)
  await eventually(async () => {
    if (started.child.exitCode !== null || started.child.signalCode !== null) {
      throw new Error(`fastchat ${args.join(' ')} on ${host} exited:\n${started.stdout()}${started.stderr()}`)
    }
    return /listening on https?:\/\//.test(started.stdout())
  }, `fastchat ${args[0]} on ${host} to listen`, 20_000)
  return started
}

/** Runs the CLI as `user` on a host with --json; expects success and returns the parsed output. */
export async function cliIn<T = any>(hosts: Hosts, host: string, user: CliUser, args: string[]): Promise<T> {
  const result = await hosts.exec(host, process.execPath, [CLI, ...args, '--json'], {env: {...user.env(), DEBUG: ''}, timeoutMs: 30_000})
  if (result.code !== 0) throw new Error(`fastchat ${args.join(' ')} on ${host} exited ${result.code}:\n${result.stdout}\n${result.stderr}`)
  return JSON.parse(result.stdout) as T
}

/** A listen that has not ended this long after Ctrl-C is killed (and the test that stops it says so by its exit). */
const STOP_WAIT_MS = 10_000

export type JsonLine = Record<string, any>

/** A long-running `fastchat <args> --json` as `user` on a host: the JSON lines it printed, and waits on them. */
export class HostCli {
  private constructor(
    readonly host: string,
    readonly user: CliUser,
    readonly process: HostProcess,
  ) {}

  static start(hosts: Hosts, host: string, user: CliUser, args: string[]): HostCli {
    return new HostCli(host, user, hosts.spawn(host, [process.execPath, CLI, ...args, '--json'], {...user.env(), DEBUG: ''}))
  }

  /** Every complete line printed so far that is a JSON object (a line still being written is left out). */
  lines(): JsonLine[] {
    const out = this.process.stdout()
    return out
      .slice(0, out.lastIndexOf('\n') + 1)
      .split('\n')
      .flatMap((line) => {
        // Not every line is one: a usage error prints one object over several lines.
        try {
          return line.startsWith('{') ? [JSON.parse(line) as JsonLine] : []
        } catch {
          return []
        }
      })
  }

  /** Resolves with the first line that `match` accepts; fails at once, with its output, if the process has ended. */
  async waitFor(match: (line: JsonLine) => boolean, what: string, timeoutMs = 20_000): Promise<JsonLine> {
    const {child} = this.process
    try {
      return await eventually(async () => {
        const found = this.lines().find(match)
        if (found) return found
        if (child.exitCode !== null || child.signalCode !== null) throw new Error(`it exited (${child.exitCode ?? child.signalCode})`)
        return undefined
      }, what, timeoutMs)
    } catch (error) {
      throw new Error(`${this.user.username} on ${this.host}: ${what}: ${(error as Error).message}\nstdout:\n${this.process.stdout().slice(-3_000)}\nstderr:\n${this.process.stderr().slice(-3_000)}`)
    }
  }

  /** SIGINT (a user's Ctrl-C), SIGKILL if it has not ended STOP_WAIT_MS later; then the exit code or signal. */
  async stop(): Promise<number | string> {
    const timer = setTimeout(() => this.process.child.kill('SIGKILL'), STOP_WAIT_MS)
    try {
      return await this.process.stop('SIGINT')
    } finally {
      clearTimeout(timer)
    }
  }
}
