import {type ChildProcess, execFileSync, spawn} from 'node:child_process'
import {randomBytes, randomInt} from 'node:crypto'
import {once} from 'node:events'
import {createConnection, createServer, type Server, type Socket} from 'node:net'

/*
 * Several hosts on one Linux machine, made with network namespaces: per
 * segment a bridge in the root namespace, and per host a namespace joined to
 * its segment's bridge by a veth pair. Each host has its own address and port
 * space (every chat server can listen on :4001), and a test can silently cut
 * the network between two of them (iptables DROP: no RST, no ICMP; a
 * connection just stops hearing back), as a broken switch or a dead machine
 * would. Needs root, `ip` and `iptables`.
 *
 *   root namespace: per segment a bridge with 10.213.X.1; on the first segment also
 *                   .2 (the database forwarder). It routes between the segments.
 *   host i of a segment: namespace, 10.213.X.(11 + i)/24, default route via .1
 *   NAT host:       a host on a segment (its public leg, eth0) that is also the
 *                   router of a private segment of its own (bridge `lan` inside
 *                   its namespace, P.1/24); the hosts behind it have P.(11 + k),
 *                   default route via P.1. It masquerades what they send out of
 *                   eth0 and drops every connection attempt made to it from
 *                   outside (no port forwards): nobody can open a connection to
 *                   a host behind it, and trying times out (no RST, no ICMP).
 *
 * Two addresses in the root namespace so that a host can be cut from the
 * database while the test still talks to it. The root namespace forwards only
 * between the topology's own bridges (per-bridge `forwarding`, not the global
 * net.ipv4.ip_forward, which stays as it was), and a private segment's /24 has
 * a blackhole route there, so a packet for it is dropped silently as on the
 * Internet rather than sent out of the machine or answered with an ICMP error.
 *
 * Nothing is left behind: destroy() (or, if the run is killed, a synchronous
 * clean-up on exit or on a signal) removes the processes, namespaces, veths,
 * bridges, the root namespace's routes and iptables rules (their sysctls go
 * with the bridges).
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

/**
 * What createTopology() builds. Host names are unique across the whole
 * topology, short, lower-case, and not `root` or `db`.
 */
export interface TopologySpec {
  /**
   * Segment name → the hosts on it, in address order. The first segment is the
   * one the root namespace's `root` (.1) and `db` (.2) addresses are on.
   */
  segments: Record<string, string[]>
  /**
   * NAT host name → the segment its public leg is on, and the hosts behind it
   * (on a private segment of its own, `subnets[<nat host>]`).
   */
  nat?: Record<string, {segment: string; hosts: string[]}>
}

export interface Hosts {
  /** The random part of every name made for this topology: namespaces `fc-<id>-<host>`, interfaces `fcb<id>…` and `fc<id>v…`. */
  readonly id: string
  /** The first segment's /24 as its first three octets, e.g. `10.213.57`. */
  readonly subnet: string
  /** Every segment's /24 (first three octets) by segment name; a NAT host's private segment under the NAT host's name. */
  readonly subnets: Readonly<Record<string, string>>
  /** Every host, NAT hosts and the hosts behind them included. */
  readonly names: readonly string[]
  /**
   * A host's address: on its segment, for a host behind a NAT its private one,
   * for a NAT host its public one. `root` is the test process's (.1 of the first
   * segment), `db` the database forwarder's (.2 of the first segment).
   */
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
  /**
   * Drops every packet between two hosts, both ways, silently, with rules in
   * the hosts' own namespaces. `root` or `db` may be one side. A host behind a
   * NAT is seen by others at its NAT host's public address: cut it on its own side.
   */
  cut(a: string, b: string): Promise<void>
  heal(a: string, b: string): Promise<void>
  /**
   * Kills every process started here, removes the namespaces, veths, bridges,
   * routes and iptables rules, and closes the forwarder; throws if anything of
   * this topology is still there afterwards.
   */
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

/** Host i of a segment gets .(FIRST_HOST + i); .1 and .2 are the root namespace's (or the NAT host's .1). */
const FIRST_HOST = 11
/** A process that ignores SIGKILL's exit for this long is reported, not waited for forever. */
const EXIT_WAIT_MS = 5_000
/** Inside a NAT host's namespace: its public leg, and the bridge of its private segment. */
const NAT_PUBLIC = 'eth0'
const NAT_LAN = 'lan'

/** One segment and its hosts, as today's multi-host test uses them. */
export async function createHosts(names: string[]): Promise<Hosts> {
  return createTopology({segments: {hosts: names}})
}

type Command = [string, string[]]

/**
 * Builds `spec`: a bridge per segment in the root namespace, which routes
 * between them, and NAT hosts with hosts behind them (see the file's head).
 */
export async function createTopology(spec: TopologySpec): Promise<Hosts> {
  const segmentNames = Object.keys(spec.segments)
  const nats = Object.entries(spec.nat ?? {})
  const bridged = segmentNames.flatMap((segment) => spec.segments[segment]!.map((host) => ({host, segment})))
  const behind = nats.flatMap(([nat, {hosts}]) => hosts.map((host) => ({host, nat})))
  const names = [...bridged.map((h) => h.host), ...nats.map(([nat]) => nat), ...behind.map((h) => h.host)]
  if (segmentNames.length === 0) throw new Error('a topology needs a segment')
  if (new Set(names).size !== names.length || names.some((n) => n === 'root' || n === 'db' || !/^[a-z0-9]{1,12}$/.test(n))) {
    throw new Error(`host names must be unique, short, lower-case and not root or db: ${names.join(', ')}`)
  }
  for (const [nat, {segment}] of nats) {
    if (!segmentNames.includes(segment)) throw new Error(`NAT host ${nat}: no segment ${segment} (segments: ${segmentNames.join(', ')})`)
  }
  // The public legs of the NAT hosts are hosts of their segments, after the segment's own.
  const onSegment = (segment: string) => [...spec.segments[segment]!, ...nats.filter(([, n]) => n.segment === segment).map(([nat]) => nat)]
  if ([...segmentNames.map((s) => onSegment(s).length), ...nats.map(([, n]) => n.hosts.length)].some((n) => n > 200)) {
    throw new Error('at most 200 hosts on one /24')
  }
  if (segmentNames.length > 9) throw new Error('at most 9 segments')
  // A random suffix and subnets: two runs, or two mocha workers, never share a name or an address.
  const suffix = randomBytes(3).toString('hex')
  // Interface names: 15 characters at most. The first bridge keeps the name a one-segment run always had.
  const bridges = segmentNames.map((_, i) => (i === 0 ? `fcb${suffix}` : `fcb${suffix}${i}`))
  const bridgeOf = (segment: string) => bridges[segmentNames.indexOf(segment)]!
  const namespace = (host: string) => `fc-${suffix}-${host}`
  const rootVeth = (i: number) => `fc${suffix}v${i}`
  const routed = segmentNames.length > 1 || nats.length > 0
  const subnets: Record<string, string> = {}
  const addresses = new Map<string, string>()
  /** Rules added to the root namespace's FORWARD chain (only when the machine's firewall needs them, see below). */
  const forwardRules: string[][] = []
  /** Blackhole routes in the root namespace for the private segments. */
  const blackholes: string[] = []
  let rootVeths = 0
  let bridgesMade = 0
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
  const teardownCommands = (): Command[] => [
    ...Array.from({length: rootVeths}, (_, i): Command => ['ip', ['link', 'del', rootVeth(i)]]),
    // Deleting a namespace deletes the veths and bridges inside it, and its iptables rules and sysctls.
    ...names.map((host): Command => ['ip', ['netns', 'del', namespace(host)]]),
    ...forwardRules.map((rule): Command => ['iptables', ['-w', '5', '-D', ...rule]]),
    ...blackholes.map((prefix): Command => ['ip', ['route', 'del', 'blackhole', prefix]]),
    // With a bridge go its addresses, its routes and its `forwarding`.
    ...bridges.slice(0, bridgesMade).map((bridge): Command => ['ip', ['link', 'del', bridge]]),
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

  /** What of this topology the machine still has (empty once destroyed). */
  const leftovers = async (): Promise<string[]> => {
    const links = (await run('ip', ['-o', 'link', 'show'])).stdout.split('\n').filter((line) => line.includes(`fcb${suffix}`) || line.includes(`fc${suffix}v`))
    const spaces = (await run('ip', ['netns', 'list'])).stdout.split('\n').filter((line) => line.startsWith(`fc-${suffix}-`))
    const routes = (await run('ip', ['-4', 'route', 'show'])).stdout.split('\n').filter((line) => blackholes.some((prefix) => line.includes(prefix)))
    const rules = (await run('iptables', ['-w', '5', '-S'])).stdout.split('\n').filter((line) => line.includes(`fcb${suffix}`))
    return [...links, ...spaces, ...routes, ...rules].map((line) => line.trim())
  }

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
    const left = await leftovers()
    if (left.length > 0) problems.push(`left behind: ${left.join('; ')}`)
    if (problems.length > 0) throw new Error(`netns cleanup: ${problems.join('; ')}`)
  }

  const must = async (cmd: string, args: string[]) => {
    const result = await run(cmd, args)
    if (result.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${result.code}: ${firstLine(result)}`)
  }
  const inside = (host: string, cmd: string, args: string[]) => must('ip', ['netns', 'exec', namespace(host), cmd, ...args])

  /** Gives `host`'s namespace (its `eth0` already there) the address `ip` and a default route via `gateway`. */
  const addHost = async (host: string, ip: string, gateway: string) => {
    const ns = namespace(host)
    await must('ip', ['-n', ns, 'addr', 'add', `${ip}/24`, 'dev', 'eth0'])
    await must('ip', ['-n', ns, 'link', 'set', 'eth0', 'up'])
    await must('ip', ['-n', ns, 'link', 'set', 'lo', 'up'])
    await must('ip', ['-n', ns, 'route', 'add', 'default', 'via', gateway])
    addresses.set(host, ip)
  }

  try {
    for (const [index, segment] of segmentNames.entries()) {
      const bridge = bridges[index]!
      const own = index === 0 ? ['.1', '.2'] : ['.1'] // .2: secondary, traffic from this process leaves from .1
      for (let attempt = 1; ; attempt++) {
        const subnet = await freeSubnet(Object.values(subnets))
        await must('ip', ['link', 'add', bridge, 'type', 'bridge'])
        bridgesMade = index + 1
        for (const host of own) await must('ip', ['addr', 'add', `${subnet}${host}/24`, 'dev', bridge])
        // Another run may have taken the same /24 at the same moment: then each tries another.
        const holders = (await run('ip', ['-4', '-o', 'addr', 'show'])).stdout.split('\n').filter((line) => line.includes(` ${subnet}.`))
        if (holders.every((line) => line.includes(` ${bridge} `))) {
          subnets[segment] = subnet
          break
        }
        await must('ip', ['link', 'del', bridge])
        bridgesMade = index
        if (attempt === 3) throw new Error(`no free 10.213.X.0/24 subnet after ${attempt} tries`)
      }
      await must('ip', ['link', 'set', bridge, 'up'])
      // This bridge only: the machine's other interfaces go on not forwarding if they did not.
      if (routed) await must('sysctl', ['-q', '-w', `net.ipv4.conf.${bridge}.forwarding=1`])
    }
    addresses.set('root', `${subnets[segmentNames[0]!]}.1`).set('db', `${subnets[segmentNames[0]!]}.2`)
    // With br_netfilter, frames between two ports of a bridge pass the root namespace's FORWARD chain, as do packets routed
    // between two bridges: on a machine whose firewall drops forwarded traffic (Docker sets that policy) the hosts could not
    // talk. Let the topology's own through, and nothing else.
    if ((await run('iptables', ['-w', '5', '-S', 'FORWARD'])).stdout.trim() !== '-P FORWARD ACCEPT') {
      for (const from of bridges) {
        for (const to of bridges) {
          const rule = ['FORWARD', '-i', from, '-o', to, '-j', 'ACCEPT']
          await must('iptables', ['-w', '5', '-I', ...rule])
          forwardRules.push(rule)
        }
      }
    }
    for (const segment of segmentNames) {
      const subnet = subnets[segment]!
      for (const [i, host] of onSegment(segment).entries()) {
        const ns = namespace(host)
        const veth = rootVeth(rootVeths)
        await must('ip', ['netns', 'add', ns])
        await must('ip', ['link', 'add', veth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns])
        rootVeths++
        await must('ip', ['link', 'set', veth, 'master', bridgeOf(segment), 'up'])
        await addHost(host, `${subnet}.${FIRST_HOST + i}`, `${subnet}.1`)
      }
    }
    for (const [nat, {hosts}] of nats) {
      // The private /24: unknown to the root namespace but for a blackhole route. Adding it fails if another run holds it.
      for (let attempt = 1; ; attempt++) {
        const subnet = await freeSubnet([...Object.values(subnets)])
        if ((await run('ip', ['route', 'add', 'blackhole', `${subnet}.0/24`])).code === 0) {
          blackholes.push(`${subnet}.0/24`)
          subnets[nat] = subnet
          break
        }
        if (attempt === 3) throw new Error(`no free 10.213.X.0/24 subnet for ${nat}'s private segment after ${attempt} tries`)
      }
      const subnet = subnets[nat]!
      const natNs = namespace(nat)
      await must('ip', ['-n', natNs, 'link', 'add', NAT_LAN, 'type', 'bridge'])
      await must('ip', ['-n', natNs, 'addr', 'add', `${subnet}.1/24`, 'dev', NAT_LAN])
      await must('ip', ['-n', natNs, 'link', 'set', NAT_LAN, 'up'])
      for (const [k, host] of hosts.entries()) {
        const ns = namespace(host)
        await must('ip', ['netns', 'add', ns])
        await must('ip', ['-n', natNs, 'link', 'add', `p${k}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns])
        await must('ip', ['-n', natNs, 'link', 'set', `p${k}`, 'master', NAT_LAN, 'up'])
        await addHost(host, `${subnet}.${FIRST_HOST + k}`, `${subnet}.1`)
      }
      await inside(nat, 'sysctl', ['-q', '-w', 'net.ipv4.ip_forward=1'])
      const iptables = (args: string[]) => inside(nat, 'iptables', ['-w', '5', ...args])
      await iptables(['-t', 'nat', '-A', 'POSTROUTING', '-o', NAT_PUBLIC, '-j', 'MASQUERADE'])
      // No port forwards: from outside, only answers to what the private side started get in; a connection attempt is
      // dropped, so it times out as it would at a home router, rather than being refused.
      await iptables(['-A', 'INPUT', '-i', NAT_PUBLIC, '-m', 'conntrack', '--ctstate', 'ESTABLISHED,RELATED', '-j', 'ACCEPT'])
      await iptables(['-A', 'INPUT', '-i', NAT_PUBLIC, '-p', 'tcp', '--syn', '-j', 'DROP'])
      await iptables(['-A', 'FORWARD', '-i', NAT_PUBLIC, '-m', 'conntrack', '--ctstate', 'ESTABLISHED,RELATED', '-j', 'ACCEPT'])
      await iptables(['-A', 'FORWARD', '-i', NAT_PUBLIC, '-j', 'DROP'])
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
    id: suffix,
    subnet: subnets[segmentNames[0]!]!,
    subnets,
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

/** A 10.213.X.0/24 no interface of this machine has an address in, no route leads to, and not in `taken`. */
async function freeSubnet(taken: string[]): Promise<string> {
  const used = `${(await run('ip', ['-4', '-o', 'addr', 'show'])).stdout}\n${(await run('ip', ['-4', 'route', 'show'])).stdout}`
  for (let attempt = 0; attempt < 50; attempt++) {
    const subnet = `10.213.${randomInt(1, 255)}`
    if (!taken.includes(subnet) && !used.includes(` ${subnet}.`) && !used.includes(`${subnet}.0/`)) return subnet
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
