import {type ChildProcess, execFileSync, spawn} from 'node:child_process'
import {randomBytes, randomInt} from 'node:crypto'
import {once} from 'node:events'
import {createConnection, createServer, type Server, type Socket} from 'node:net'

/*
 * Several hosts on one Linux machine, made with network namespaces: a bridge
 * in the root namespace, and per host a namespace joined to it by a veth pair.
 * Each host has its own address and port space (every chat server can listen
 * on :4001), and a test can silently cut the network between two of them
 * (iptables DROP: no RST, no ICMP; a connection just stops hearing back), as
 * a broken switch or a dead machine would. Needs root, `ip` and `iptables`.
 *
 *   root namespace: bridge, 10.213.X.1 (the test process) and .2 (the database forwarder)
 *   host i:         namespace, 10.213.X.(11 + i)/24, default route via .1
 *
 * Two addresses in the root namespace so that a host can be cut from the
 * database while the test still talks to it. Nothing is left behind: destroy()
 * (or, if the run is killed, a synchronous clean-up on exit or on a signal)
 * removes the processes, namespaces, veths and bridge.
 */

export interface ExecResult {
  code: number
  stdout: string
  stderr: string
}

export interface HostProcess {
  host: string
  child: ChildProcess
  /** What it wrote so far. */
  stdout(): string
  stderr(): string
  /** Sends `signal` (SIGTERM by default) and resolves with the exit code or signal once it is gone. */
  stop(signal?: NodeJS.Signals): Promise<number | string>
}

export interface Hosts {
  /** The first three octets of the /24, e.g. `10.213.57`. */
  readonly subnet: string
  readonly names: readonly string[]
  /** A host's address; `root` is the test process's (.1), `db` the database forwarder's (.2). */
  address(host: string): string
  /** Runs `cmd args` in the host's namespace to completion; never rejects on a non-zero exit. */
  exec(host: string, cmd: string, args: string[], options?: {env?: NodeJS.ProcessEnv; timeoutMs?: number}): Promise<ExecResult>
  /** Starts a long-running `args[0] args[1..]` in the host's namespace; destroy() kills it if it still runs. */
  spawn(host: string, args: string[], env?: NodeJS.ProcessEnv): HostProcess
  /**
   * Makes `databaseUrl`'s server reachable from every host at `db` (.2): a TCP
   * forwarder in this process. Returns the URL rewritten to go through it.
   */
  forwardDatabase(databaseUrl: string): Promise<string>
  /** Drops every packet between two hosts, both ways, silently. `root` or `db` may be one side. */
  cut(a: string, b: string): Promise<void>
  heal(a: string, b: string): Promise<void>
  /** Kills every process started here, removes the namespaces, veths and bridge, and closes the forwarder. */
  destroy(): Promise<void>
}

/** Why namespaces cannot be made here (for `this.skip()`), or undefined when they can. */
export async function available(): Promise<string | undefined> {
  if (process.platform !== 'linux') return `not Linux (${process.platform})`
  if (process.getuid?.() !== 0) return 'not running as root'
  for (const [cmd, args] of [['ip', ['-V']], ['iptables', ['--version']]] as const) {
    const result = await run(cmd, [...args])
    if (result.code !== 0) return `\`${cmd} ${args.join(' ')}\` fails (${firstLine(result)})`
  }
  const probe = `fc-probe-${randomBytes(3).toString('hex')}`
  const added = await run('ip', ['netns', 'add', probe])
  if (added.code !== 0) return `\`ip netns add\` fails (${firstLine(added)})`
  try {
    const rules = await run('ip', ['netns', 'exec', probe, 'iptables', '-w', '5', '-S'])
    if (rules.code !== 0) return `iptables does not work in a network namespace (${firstLine(rules)})`
  } finally {
    await run('ip', ['netns', 'del', probe])
  }
  return undefined
}

/** Host i gets .(FIRST_HOST + i); .1 and .2 are the root namespace's. */
const FIRST_HOST = 11
/** A process that ignores SIGKILL's exit for this long is reported, not waited for forever. */
const EXIT_WAIT_MS = 5_000

export async function createHosts(names: string[]): Promise<Hosts> {
  if (new Set(names).size !== names.length || names.some((n) => n === 'root' || n === 'db' || !/^[a-z0-9]{1,12}$/.test(n))) {
    throw new Error(`host names must be unique, short, lower-case and not root or db: ${names.join(', ')}`)
  }
  if (names.length > 200) throw new Error('at most 200 hosts on one /24')
  // A random suffix and subnet: two runs, or two mocha workers, never share a name or an address.
  const suffix = randomBytes(3).toString('hex')
  const bridge = `fcb${suffix}` // interface names: 15 characters at most
  const namespace = (host: string) => `fc-${suffix}-${host}`
  const rootVeth = (i: number) => `fc${suffix}v${i}`
  let subnet = ''
  const addresses = new Map<string, string>()
  /** Set when the machine's firewall needed a rule to let our bridge's traffic through (see below). */
  let forwardRule: string[] | undefined
  const processes = new Set<ChildProcess>()
  const forwarders: {server: Server; sockets: Set<Socket>}[] = []
  const cuts = new Set<string>()
  let destroyed = false

  const address = (host: string) => {
    const found = addresses.get(host)
    if (!found) throw new Error(`no host ${host} (hosts: ${names.join(', ')}, root, db)`)
    return found
  }
  const requireHost = (host: string) => {
    if (!names.includes(host)) throw new Error(`no host ${host} (hosts: ${names.join(', ')})`)
    return namespace(host)
  }

  /** Synchronous, for process exit: what destroy() does, minus the waiting. */
  const emergencyCleanup = () => {
    if (destroyed) return
    destroyed = true
    for (const child of processes) child.kill('SIGKILL')
    for (const host of names) {
      let pids: string[] = []
      try {
        pids = execFileSync('ip', ['netns', 'pids', namespace(host)], {encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore']}).split(/\s+/).filter(Boolean)
      } catch {
        // the namespace is gone
      }
      for (const pid of pids) killQuietly(Number(pid))
    }
    for (const [cmd, args] of teardownCommands()) {
      try {
        execFileSync(cmd, args, {stdio: 'ignore'})
      } catch {
        // already gone
      }
    }
  }
  const teardownCommands = (): [string, string[]][] => [
    ...names.map((_, i): [string, string[]] => ['ip', ['link', 'del', rootVeth(i)]]),
    ...names.map((host): [string, string[]] => ['ip', ['netns', 'del', namespace(host)]]),
    ...(forwardRule ? [['iptables', ['-w', '5', '-D', ...forwardRule]] as [string, string[]]] : []),
    ['ip', ['link', 'del', bridge]],
  ]
  // A run stopped by a signal (Ctrl-C; mocha's parent sends SIGINT then SIGTERM) skips `after` and 'exit' alike:
  // clean up, then let the signal do what it would have done.
  const onSignal = (signal: NodeJS.Signals) => {
    emergencyCleanup()
    unhook()
    process.kill(process.pid, signal)
  }
  const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const
  const unhook = () => {
    process.removeListener('exit', emergencyCleanup)
    for (const signal of signals) process.removeListener(signal, onSignal)
  }
  process.once('exit', emergencyCleanup)
  for (const signal of signals) process.once(signal, onSignal)

  const destroy = async () => {
    if (destroyed) return
    destroyed = true
    unhook()
    const problems: string[] = []
    // Processes first: a namespace that is deleted keeps running what is in it.
    const exits = [...processes].map((child) => {
      const exited = child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : once(child, 'exit').then(() => undefined)
      child.kill('SIGKILL')
      return exited
    })
    const waited = await Promise.race([Promise.all(exits).then(() => true), delay(EXIT_WAIT_MS).then(() => false)])
    if (!waited) problems.push('a process did not exit after SIGKILL')
    for (const host of names) {
      const pids = await run('ip', ['netns', 'pids', namespace(host)])
      // A grandchild of one of ours, in our namespace.
      for (const pid of pids.stdout.split(/\s+/).filter(Boolean)) killQuietly(Number(pid))
    }
    for (const {server, sockets} of forwarders) {
      for (const socket of sockets) socket.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    }
    for (const [cmd, args] of teardownCommands()) await run(cmd, args)
    const links = await run('ip', ['-o', 'link', 'show'])
    const left = links.stdout.split('\n').filter((line) => line.includes(bridge) || line.includes(`fc${suffix}v`))
    const spaces = (await run('ip', ['netns', 'list'])).stdout.split('\n').filter((line) => line.startsWith(`fc-${suffix}-`))
    if (left.length > 0 || spaces.length > 0) problems.push(`left behind: ${[...left, ...spaces].join('; ')}`)
    if (problems.length > 0) throw new Error(`netns cleanup: ${problems.join('; ')}`)
  }

  const must = async (cmd: string, args: string[]) => {
    const result = await run(cmd, args)
    if (result.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${result.code}: ${firstLine(result)}`)
  }

  try {
    for (let attempt = 1; ; attempt++) {
      subnet = await freeSubnet()
      await must('ip', ['link', 'add', bridge, 'type', 'bridge'])
      await must('ip', ['addr', 'add', `${subnet}.1/24`, 'dev', bridge])
      await must('ip', ['addr', 'add', `${subnet}.2/24`, 'dev', bridge]) // secondary: traffic from this process leaves from .1
      // Another run may have taken the same /24 at the same moment: then each tries another.
      const holders = (await run('ip', ['-4', '-o', 'addr', 'show'])).stdout.split('\n').filter((line) => line.includes(` ${subnet}.`))
      if (holders.every((line) => line.includes(` ${bridge} `))) break
      await must('ip', ['link', 'del', bridge])
      if (attempt === 3) throw new Error(`no free 10.213.X.0/24 subnet after ${attempt} tries`)
    }
    addresses.set('root', `${subnet}.1`).set('db', `${subnet}.2`)
    for (const [i, host] of names.entries()) addresses.set(host, `${subnet}.${FIRST_HOST + i}`)
    await must('ip', ['link', 'set', bridge, 'up'])
    // With br_netfilter, frames between two ports of a bridge pass the root namespace's FORWARD chain: on a machine
    // whose firewall drops forwarded traffic (Docker sets that policy) the hosts could not talk. Let this bridge's through.
    if ((await run('iptables', ['-w', '5', '-S', 'FORWARD'])).stdout.trim() !== '-P FORWARD ACCEPT') {
      const rule = ['FORWARD', '-i', bridge, '-o', bridge, '-j', 'ACCEPT']
      await must('iptables', ['-w', '5', '-I', ...rule])
      forwardRule = rule
    }
    for (const [i, host] of names.entries()) {
      const ns = namespace(host)
      await must('ip', ['netns', 'add', ns])
      await must('ip', ['link', 'add', rootVeth(i), 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns])
      await must('ip', ['link', 'set', rootVeth(i), 'master', bridge, 'up'])
      await must('ip', ['-n', ns, 'addr', 'add', `${address(host)}/24`, 'dev', 'eth0'])
      await must('ip', ['-n', ns, 'link', 'set', 'eth0', 'up'])
      await must('ip', ['-n', ns, 'link', 'set', 'lo', 'up'])
      await must('ip', ['-n', ns, 'route', 'add', 'default', 'via', `${subnet}.1`])
    }
  } catch (error) {
    await destroy().catch(() => undefined)
    throw error
  }

  const iptables = async (host: string, action: '-I' | '-D', peer: string) => {
    const ns = requireHost(host)
    // -w: the xtables lock is one file for every namespace (and every mocha worker).
    await must('ip', ['netns', 'exec', ns, 'iptables', '-w', '5', action, 'INPUT', '-s', peer, '-j', 'DROP'])
    await must('ip', ['netns', 'exec', ns, 'iptables', '-w', '5', action, 'OUTPUT', '-d', peer, '-j', 'DROP'])
  }
  /** Cuts are made in the namespaces only: the root namespace's firewall is the machine's, not the test's. */
  const sides = (a: string, b: string): [string, string][] => {
    if (a === b) throw new Error(`cannot cut ${a} from itself`)
    const pairs: [string, string][] = []
    if (names.includes(a)) pairs.push([a, address(b)])
    if (names.includes(b)) pairs.push([b, address(a)])
    if (pairs.length === 0) throw new Error(`cut ${a} ${b}: one side must be a host`)
    return pairs
  }
  const pairKey = (a: string, b: string) => [a, b].sort().join('|')

  return {
    subnet,
    names,
    address,

    exec(host, cmd, args, options = {}) {
      return run('ip', ['netns', 'exec', requireHost(host), cmd, ...args], options)
    },

    spawn(host, args, env = {}) {
      if (destroyed) throw new Error('hosts destroyed')
      // `ip netns exec` execs the command: the child's pid is the command's own.
      const child = spawn('ip', ['netns', 'exec', requireHost(host), ...args], {env: {...process.env, ...env}, stdio: ['ignore', 'pipe', 'pipe']})
      processes.add(child)
      let stdout = ''
      let stderr = ''
      child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()))
      child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
      const exited = new Promise<number | string>((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown')))
      return {
        host,
        child,
        stdout: () => stdout,
        stderr: () => stderr,
        async stop(signal = 'SIGTERM') {
          if (child.exitCode === null && child.signalCode === null) child.kill(signal)
          return exited
        },
      }
    },

    async forwardDatabase(databaseUrl) {
      const target = new URL(databaseUrl)
      const upstream = {host: target.hostname.replace(/^\[|\]$/g, ''), port: Number(target.port) || 5432}
      const sockets = new Set<Socket>()
      const server = createServer((client) => {
        const onward = createConnection(upstream)
        for (const socket of [client, onward]) {
          sockets.add(socket)
          socket.once('close', () => sockets.delete(socket))
          socket.on('error', () => undefined)
        }
        client.pipe(onward).pipe(client)
        client.once('close', () => onward.destroy())
        onward.once('close', () => client.destroy())
      })
      forwarders.push({server, sockets})
      server.listen(0, address('db'))
      await once(server, 'listening')
      target.hostname = address('db')
      target.port = String((server.address() as {port: number}).port)
      return target.toString()
    },

    async cut(a, b) {
      const key = pairKey(a, b)
      if (cuts.has(key)) return
      for (const [host, peer] of sides(a, b)) await iptables(host, '-I', peer)
      cuts.add(key)
    },

    async heal(a, b) {
      const key = pairKey(a, b)
      if (!cuts.delete(key)) return
      for (const [host, peer] of sides(a, b)) await iptables(host, '-D', peer)
    },

    destroy,
  }
}

/** A 10.213.X.0/24 no interface of this machine has an address in. */
async function freeSubnet(): Promise<string> {
  const used = (await run('ip', ['-4', '-o', 'addr', 'show'])).stdout
  for (let attempt = 0; attempt < 50; attempt++) {
    const subnet = `10.213.${randomInt(1, 255)}`
    if (!used.includes(` ${subnet}.`)) return subnet
  }
  throw new Error('no free 10.213.X.0/24 subnet')
}

function run(cmd: string, args: string[], options: {env?: NodeJS.ProcessEnv; timeoutMs?: number} = {}): Promise<ExecResult> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, {env: {...process.env, ...options.env}, stdio: ['ignore', 'pipe', 'pipe']})
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()))
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 30_000)
    child.once('error', (error) => {
      clearTimeout(timer)
      resolve({code: 127, stdout, stderr: `${stderr}${error.message}`})
    })
    child.once('close', (code, signal) => {
      clearTimeout(timer)
      resolve({code: code ?? (signal === 'SIGKILL' ? 137 : 128), stdout, stderr})
    })
  })
}

function killQuietly(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL')
  } catch {
    // gone meanwhile
  }
}

const firstLine = (result: ExecResult) => (result.stderr || result.stdout).trim().split('\n')[0] ?? ''
const delay = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms).unref())
