import {type ChildProcess, spawn} from 'node:child_process'

import type {CliUser} from './cli.js'
import {CLI} from './processes.js'

export interface Listening {
  child: ChildProcess
  /** What it wrote to stderr so far. */
  stderr(): string
  /** Every JSON line it printed so far, parsed: messages and group events (its `{"type":"transport"}` lines left out). */
  lines(): Record<string, unknown>[]
  /** The transports it said it used, in order (its `{"type":"transport"}` lines). */
  transports(): string[]
  /** SIGINT, then the exit code. */
  stop(): Promise<number | null>
}

/** Runs `fastchat listen --json [args]` as `user` until stopped. */
export function listen(user: CliUser, args: string[] = []): Listening {
  const child = spawn(process.execPath, [CLI, 'listen', '--json', ...args], {env: {...process.env, ...user.env()}, stdio: ['ignore', 'pipe', 'pipe']})
  let stdout = ''
  let stderr = ''
  child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()))
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  const parsed = () =>
    stdout
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line) as Record<string, unknown>)
  return {
    child,
    stderr: () => stderr,
    lines: () => parsed().filter((line) => line.type !== 'transport'),
    transports: () => parsed().filter((line) => line.type === 'transport').map((line) => String(line.transport)),
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGINT')
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000)
      const code = await exited
      clearTimeout(timer)
      return code
    },
  }
}
