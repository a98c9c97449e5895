import {execFile, spawn} from 'node:child_process'
import {once} from 'node:events'
import {readFile} from 'node:fs/promises'
import {promisify} from 'node:util'

import {expect} from 'chai'

import {available, createTopology, type HostProcess, type Hosts, type TopologySpec} from '../helpers/netns.js'
import {eventually, isAlive} from '../helpers/processes.js'

/*
 * The topology issue 17's tests run on (test/helpers/netns.ts), proved with
 * real TCP connections between its hosts:
 *
 *   servers: srv                     (bridge A)
 *   clients: c1, c2, nat's public leg (bridge B)   the root namespace routes A <-> B
 *   behind nat: c3                   (masqueraded; nothing reaches it from outside)
 */

const SPEC: TopologySpec = {segments: {servers: ['srv'], clients: ['c1', 'c2']}, nat: {nat: {segment: 'clients', hosts: ['c3']}}}
/** How long a connection attempt that should fail is given: a silent drop must still be silent after it. */
const CONNECT_WAIT_MS = 1_000

/** A TCP server on every address and a free port: it answers each connection with its host and the address it sees. */
const SERVER = `const net = require('node:net')
const server = net.createServer((socket) => socket.end(JSON.stringify({host: process.argv[1], from: socket.remoteAddress.replace(/^::ffff:/, '')}) + '\\n'))
server.listen(0, '0.0.0.0', () => console.log('listening ' + server.address().port))`

/** Connects to argv[1]:argv[2] and prints what became of it within argv[3] ms: connected (with the answer), refused, timeout or an error code. */
const CLIENT = `const net = require('node:net')
const [host, port, waitMs] = process.argv.slice(1)
const started = Date.now()
const done = (outcome) => { console.log(JSON.stringify({...outcome, ms: Date.now() - started})); process.exit(0) }
const socket = net.connect({host, port: Number(port)})
let answer = ''
socket.on('data', (chunk) => (answer += chunk))
socket.on('end', () => done({result: 'connected', answer: JSON.parse(answer)}))
socket.on('error', (error) => done({result: error.code === 'ECONNREFUSED' ? 'refused' : 'error', code: error.code}))
setTimeout(() => done({result: socket.connecting ? 'timeout' : 'connected-silent'}), Number(waitMs))`

interface Outcome {
  result: 'connected' | 'refused' | 'timeout' | 'error' | 'connected-silent'
  code?: string
  answer?: {host: string; from: string}
  ms: number
}

describe('netns topology: two routed segments and a NAT host (test/helpers/netns.ts)', function () {
  this.timeout(60_000)

  let hosts: Hosts | undefined
  const ports = new Map<string, number>()
  const servers: HostProcess[] = []
  let forwardingBefore = ''

  before(async function () {
    const reason = await available()
    if (reason) {
      console.log(`      netns-topology: skipped, network namespaces cannot be made here: ${reason}`)
      this.skip()
    }
    forwardingBefore = await sh('sysctl', ['-n', 'net.ipv4.ip_forward'])
    hosts = await createTopology(SPEC)
    for (const host of ['srv', 'c1', 'c2', 'c3']) {
      const server = hosts.spawn(host, [process.execPath, '-e', SERVER, host])
      servers.push(server)
      const port = await eventually(async () => {
        if (server.child.exitCode !== null) throw new Error(`the TCP server on ${host} exited: ${server.stderr()}`)
        return /listening (\d+)/.exec(server.stdout())?.[1]
      }, `the TCP server on ${host} to listen`)
      ports.set(host, Number(port))
    }
  })

  after(async function () {
    await hosts?.destroy()
  })

  /** A connection attempt from `from` to `to`'s TCP server, at `to`'s address unless `at` says another. */
  const connect = async (from: string, to: string, at = hosts!.address(to)): Promise<Outcome> => {
    const result = await hosts!.exec(from, process.execPath, ['-e', CLIENT, at, String(ports.get(to)), String(CONNECT_WAIT_MS)], {timeoutMs: 10_000})
    if (result.code !== 0) throw new Error(`the TCP client on ${from} exited ${result.code}: ${result.stderr}`)
    return JSON.parse(result.stdout) as Outcome
  }

  it('gives each segment its own /24 and each host an address on it', () => {
    const {servers: a, clients: b, nat: p} = hosts!.subnets
    expect(new Set([a, b, p]).size, JSON.stringify(hosts!.subnets)).to.equal(3)
    expect(hosts!.subnet).to.equal(a)
    expect(hosts!.address('srv')).to.equal(`${a}.11`)
    expect(hosts!.address('root')).to.equal(`${a}.1`)
    expect(hosts!.address('db')).to.equal(`${a}.2`)
    expect([hosts!.address('c1'), hosts!.address('c2'), hosts!.address('nat')]).to.deep.equal([`${b}.11`, `${b}.12`, `${b}.13`])
    expect(hosts!.address('c3')).to.equal(`${p}.11`)
  })

  it('c1 connects to c2 on its own segment', async () => {
    expect(await connect('c1', 'c2')).to.deep.include({result: 'connected', answer: {host: 'c2', from: hosts!.address('c1')}})
  })

  it('c1 connects to the server host on the other segment, routed (not translated) by the root namespace', async () => {
    expect(await connect('c1', 'srv')).to.deep.include({result: 'connected', answer: {host: 'srv', from: hosts!.address('c1')}})
    expect(await connect('srv', 'c2')).to.deep.include({result: 'connected', answer: {host: 'c2', from: hosts!.address('srv')}})
  })

  it('c3 behind the NAT connects to c1 and to the server host, which see the NAT host\'s public address', async () => {
    expect(await connect('c3', 'c1')).to.deep.include({result: 'connected', answer: {host: 'c1', from: hosts!.address('nat')}})
    expect(await connect('c3', 'srv')).to.deep.include({result: 'connected', answer: {host: 'srv', from: hosts!.address('nat')}})
  })

  it('nobody outside opens a connection to c3: its private address and the NAT host\'s public one time out, not refused', async () => {
    // c3's server does listen: the NAT host, on its private segment, reaches it.
    expect(await connect('nat', 'c3'), 'the NAT host to c3').to.deep.include({result: 'connected', answer: {host: 'c3', from: `${hosts!.subnets.nat}.1`}})
    for (const [from, at] of [
      ['c1', hosts!.address('c3')],
      ['c1', hosts!.address('nat')],
      ['srv', hosts!.address('c3')],
      ['srv', hosts!.address('nat')],
    ] as const) {
      const outcome = await connect(from, 'c3', at)
      expect(outcome.result, `${from} to ${at}:${ports.get('c3')}: ${JSON.stringify(outcome)}`).to.equal('timeout')
    }
  })

  it('destroy() leaves nothing: no namespace, interface, route or iptables rule of its own, and net.ipv4.ip_forward as it was', async () => {
    const {id, subnets} = hosts!
    expect(await leftovers(id, Object.values(subnets)), 'while it runs').not.to.deep.equal([])
    await hosts!.destroy()
    for (const server of servers) expect(server.child.exitCode !== null || server.child.signalCode !== null, `the TCP server on ${server.host} was stopped`).to.equal(true)
    expect(await leftovers(id, Object.values(subnets))).to.deep.equal([])
    expect(await sh('sysctl', ['-n', 'net.ipv4.ip_forward'])).to.equal(forwardingBefore)
  })

  it('a process killed by SIGINT while the topology stands removes it on its way out', async function () {
    this.timeout(60_000)
    const helper = new URL('../helpers/netns.ts', import.meta.url).href
    const script = `const {createTopology} = await import(${JSON.stringify(helper)})
const hosts = await createTopology(${JSON.stringify(SPEC)})
const sleeper = hosts.spawn('c3', ['sleep', '600'])
console.log(JSON.stringify({id: hosts.id, subnets: Object.values(hosts.subnets), pid: sleeper.child.pid}))
setInterval(() => undefined, 1000)`
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {stdio: ['ignore', 'pipe', 'pipe']})
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()))
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
    const exited = once(child, 'exit')
    let made: {id: string; subnets: string[]; pid: number} | undefined
    try {
      made = await eventually(async () => {
        if (child.exitCode !== null) throw new Error(`the topology process exited: ${stderr}`)
        const line = stdout.split('\n').find((l) => l.startsWith('{'))
        return line ? (JSON.parse(line) as {id: string; subnets: string[]; pid: number}) : undefined
      }, 'the topology process to build its topology', 30_000)
      expect(await leftovers(made.id, made.subnets), 'while it runs').not.to.deep.equal([])
      child.kill('SIGINT')
      const [code, signal] = (await exited) as [number | null, NodeJS.Signals | null]
      expect(signal ?? code, 'how it ended').to.equal('SIGINT')
      expect(await leftovers(made.id, made.subnets)).to.deep.equal([])
      // SIGKILLed on the way out, and reaped by whoever inherited it: not at once.
      const pid = made.pid
      await eventually(async () => !isAlive(pid) || (await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '')).split(' ')[2] === 'Z', 'the process it started in c3 to be gone')
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    }
  })
})

/** What of topology `id` the machine still has, as lines of `ip` and `iptables` output. */
async function leftovers(id: string, subnets: string[]): Promise<string[]> {
  const lines = async (cmd: string, args: string[]) => (await sh(cmd, args)).split('\n')
  return [
    ...(await lines('ip', ['netns', 'list'])).filter((line) => line.startsWith(`fc-${id}-`)),
    ...(await lines('ip', ['-o', 'link', 'show'])).filter((line) => line.includes(id)),
    ...(await lines('ip', ['-4', 'route', 'show'])).filter((line) => subnets.some((subnet) => line.includes(`${subnet}.`))),
    ...(await lines('iptables', ['-w', '5', '-S'])).filter((line) => line.includes(id)),
    ...(await lines('iptables', ['-w', '5', '-t', 'nat', '-S'])).filter((line) => line.includes(id)),
  ].map((line) => line.trim())
}

async function sh(cmd: string, args: string[]): Promise<string> {
  return (await promisify(execFile)(cmd, args, {encoding: 'utf8'})).stdout.trim()
}
