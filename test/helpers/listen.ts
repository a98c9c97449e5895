import {type ChildProcess, spawn} from 'node:child_process'

import type {CliUser} from './cli.js'
import {CLI} from './processes.js'

export interface Listening {
  child: ChildProcess
  /** What it wrote to stderr so far. */
  stderr(): string
  /** Every JSON line it printed so far, parsed. */
  lines(): Record<string, unknown>[]
  /** SIGINT, then the exit code. */
  stop(): Promise<number | null>
}

/** Runs `fastchat listen --json` as `user` until stopped. */
export function listen(user: CliUser): Listening {
  const child = spawn(process.execPath, [CLI, 'listen', '--json'], {env: {...process.env, ...user.env()}, stdio: ['ignore', 'pipe', 'pipe']})
  let stdout = ''
  let stderr = ''
  child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()))
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  return {
    child,
    stderr: () => stderr,
    lines: () =>
      stdout
        .split('\n')
        .filter(Boolean)
        .map((line) => JSON.parse(line) as Record<string, unknown>),
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGINT')
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000)
      const code = await exited
      clearTimeout(timer)
      return code
    },
  }
}
