import {type ChildProcess, spawn} from 'node:child_process'
import {once} from 'node:events'
import {fileURLToPath} from 'node:url'
import {createInterface} from 'node:readline'

/** The built CLI, run as users run it (`npm test` builds first). */
export const CLI = fileURLToPath(new URL('../../bin/run.js', import.meta.url))

export interface Started {
  child: ChildProcess
  url: string
  /** Everything the process wrote to stdout and stderr so far. */
  output(): string
  /** Sends `signal` and resolves with the exit code or signal once it is gone. */
  stop(signal?: NodeJS.Signals): Promise<number | NodeJS.Signals>
}

const running = new Set<ChildProcess>()

/** Starts `fastchat <args>` and resolves once it prints the URL it listens on. */
export async function startCli(args: string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 20_000): Promise<Started> {
  const child = spawn(process.execPath, [CLI, ...args], {env: {...process.env, ...env}, stdio: ['ignore', 'pipe', 'pipe']})
  running.add(child)
  child.once('exit', () => running.delete(child))
  let output = ''
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()))
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`fastchat ${args.join(' ')} did not start:\n${output}`)), timeoutMs)
    createInterface({input: child.stdout!}).on('line', (line) => {
      output += `${line}\n`
      const match = /(?:listening on |"superserver":")(https?:\/\/[^\s"]+)/.exec(line)
      if (match) {
        clearTimeout(timer)
        resolve(match[1]!)
      }
    })
    child.once('exit', (code, signal) => {
      clearTimeout(timer)
      reject(new Error(`fastchat ${args.join(' ')} exited (${signal ?? code}) before listening:\n${output}`))
    })
  })
  return {
    child,
    url,
    output: () => output,
    async stop(signal = 'SIGTERM') {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode ?? child.signalCode!
      const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>
      child.kill(signal)
      const [code, sig] = await exited
      return code ?? sig!
    },
  }
}

export async function stopAllProcesses(): Promise<void> {
  for (const child of running) child.kill('SIGKILL')
  running.clear()
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

export async function eventually<T>(check: () => Promise<T | undefined | false>, what: string, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const result = await check()
    if (result) return result
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}
