import {spawn} from 'node:child_process'
import {once} from 'node:events'
import {mkdtemp, readFile, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {performance} from 'node:perf_hooks'

import {Client} from 'undici'

import type {Target} from '../lib/cluster.js'
import {ROOT} from '../lib/environment.js'
import {scrape} from '../lib/metrics.js'
import {usersOn, type Scenario} from '../lib/scenario.js'
import {median, round, table} from '../lib/stats.js'
import {BENCH_PASSWORD, runTag} from '../lib/users.js'

const CLI = join(ROOT, 'bin', 'run.js')

/**
 * 6. CLI cold start: `fastchat --version` and `fastchat send <user> hello`
 * (each a new node process; the file system cache is warm), median of N. The
 * requests one send makes are read from the servers' request counters; each
 * is then timed alone from this process on a fresh connection, and their sum
 * is the network part (server time included) of a send.
 */
export const cli: Scenario = async (context) => {
  const runs = context.options.quick ? 2 : 10
  const target = await context.target()
  const home = await mkdtemp(join(tmpdir(), 'fastchat-bench-cli-'))
  const env = {
    FASTCHAT_HOME: join(home, 'profile'),
    FASTCHAT_PASSWORD: BENCH_PASSWORD,
    FASTCHAT_PASSPHRASE: 'bench passphrase',
    FASTCHAT_SUPERSERVER: target.superserverUrl,
  }
  try {
    const [recipient] = await usersOn(context, 'clirc', 1, target.serverUrls)
    const nodeMs = await timeRuns(runs, ['-e', ''], {})
    const versionMs = await timeRuns(runs, [CLI, '--version'], {})
    await run([CLI, 'register', `b${runTag}_cli`, '--json'], env)
    const send = [CLI, 'send', recipient!.username, 'hello']
    // The first send pins the recipient's key and prints a note about it; later ones are the everyday case.
    await run(send, env)
    const before = await requestCounts(target)
    await run(send, env)
    const requests = diffCounts(before, await requestCounts(target))
    const sendMs = await timeRuns(runs, send, env)

    const profile = JSON.parse(await readFile(join(env.FASTCHAT_HOME, 'profile.json'), 'utf8')) as {token: string}
    const timed = []
    for (const request of requests) {
      const make = requestFor(request, {token: profile.token, recipient: recipient!.username, ciphertext: context.ciphertext})
      const ms = make ? await timeRequests(runs, make) : undefined
      timed.push({...request, medianMs: ms === undefined ? null : median(ms)})
    }
    const networkMs = round(timed.reduce((sum, r) => sum + (r.medianMs ?? 0) * r.count, 0))
    const untimed = timed.filter((r) => r.medianMs === null)
    const sendMedian = median(sendMs)
    const rows: Array<Array<string | number>> = [
      ['command (new process each)', 'runs', 'median ms', 'min ms', 'max ms'],
      ['node -e "" (the floor)', runs, median(nodeMs), round(Math.min(...nodeMs)), round(Math.max(...nodeMs))],
      ['fastchat --version', runs, median(versionMs), round(Math.min(...versionMs)), round(Math.max(...versionMs))],
      ['fastchat send <user> hello', runs, sendMedian, round(Math.min(...sendMs)), round(Math.max(...sendMs))],
      ...timed.map((r): Array<string | number> => [`  request ${r.count > 1 ? `${r.count} × ` : ''}${r.method} ${r.route} (${r.where})`, runs, r.medianMs ?? 'untimed', '', '']),
      ['  send excluding those requests', '', round(sendMedian - networkMs), '', ''],
    ]
    const notes = [
      `one send made ${requests.reduce((n, r) => n + r.count, 0)} request(s); each timed alone on a fresh connection from a warm process (the CLI opens its own connections too)`,
      ...(untimed.length > 0 ? [`not timed separately (no replay for that route): ${untimed.map((r) => `${r.method} ${r.route}`).join(', ')}`] : []),
    ]
    return {
      text: [table(rows), ...notes].join('\n'),
      data: {runs, nodeMs, versionMs, sendMs, sendMedianMs: sendMedian, requests: timed, networkMs, sendExcludingNetworkMs: round(sendMedian - networkMs)},
    }
  } finally {
    await rm(home, {recursive: true, force: true})
  }
}

async function run(args: string[], env: Record<string, string>): Promise<number> {
  const childEnv: NodeJS.ProcessEnv = {...process.env, ...env}
  delete childEnv.DEBUG
  const started = performance.now()
  const child = spawn(process.execPath, args, {env: childEnv, stdio: ['ignore', 'pipe', 'pipe']})
  let output = ''
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()))
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()))
  const [code] = (await once(child, 'exit')) as [number | null]
  const ms = performance.now() - started
  if (code !== 0) throw new Error(`node ${args.map((a) => a.replace(ROOT, '')).join(' ')} exited ${code}: ${output.trim().slice(0, 500)}`)
  return ms
}

async function timeRuns(runs: number, args: string[], env: Record<string, string>): Promise<number[]> {
  await run(args, env)
  const times: number[] = []
  for (let i = 0; i < runs; i++) times.push(round(await run(args, env)))
  return times
}

interface RequestKind {
  method: string
  route: string
  /** The URL of the process that answered it. */
  where: string
  count: number
}

type Counts = Map<string, number>

/** Requests answered so far by every process of the cluster, by process, method and route. */
async function requestCounts(target: Target): Promise<Counts> {
  const counts: Counts = new Map()
  const processes = [{url: target.superserverUrl, metric: 'fastchat_superserver_http_requests_total'}, ...target.serverUrls.map((url) => ({url, metric: 'fastchat_server_http_requests_total'}))]
  for (const {url, metric} of processes) {
    for (const [key, value] of await scrape(url)) {
      if (!key.startsWith(`${metric}{`)) continue
      const method = /method="([^"]*)"/.exec(key)?.[1]
      const route = /route="([^"]*)"/.exec(key)?.[1]
      // The bench's own scrapes are not the CLI's.
      if (!method || !route || route === '/metrics') continue
      const id = `${url} ${method} ${route}`
      counts.set(id, (counts.get(id) ?? 0) + value)
    }
  }
  return counts
}

function diffCounts(before: Counts, after: Counts): RequestKind[] {
  const out: RequestKind[] = []
  for (const [id, value] of after) {
    const count = value - (before.get(id) ?? 0)
    if (count <= 0) continue
    const [where, method, route] = id.split(' ') as [string, string, string]
    // Heartbeats and peer wake-ups are the cluster's own traffic.
    if (route.startsWith('/v1/servers') || route.startsWith('/v1/cluster')) continue
    out.push({method, route, where, count})
  }
  return out
}

interface Replay {
  url: string
  method: 'GET' | 'POST'
  headers: Record<string, string>
  body?: () => string
}

/** How to make the same request again, for the routes a send uses. */
function requestFor(request: RequestKind, values: {token: string; recipient: string; ciphertext: string}): Replay | undefined {
  const auth = {authorization: `Bearer ${values.token}`}
  const at = (path: string) => `${request.where}${path}`
  switch (`${request.method} ${request.route}`) {
    case 'GET /v1/assign':
      return {url: at('/v1/assign'), method: 'GET', headers: {}}
    case 'GET /v1/users/:username':
      return {url: at(`/v1/users/${values.recipient}`), method: 'GET', headers: auth}
    case 'GET /v1/me':
      return {url: at('/v1/me'), method: 'GET', headers: auth}
    case 'GET /v1/groups':
      return {url: at('/v1/groups'), method: 'GET', headers: auth}
    case 'GET /healthz':
      return {url: at('/healthz'), method: 'GET', headers: {}}
    case 'POST /v1/messages':
      return {
        url: at('/v1/messages'),
        method: 'POST',
        headers: {...auth, 'content-type': 'application/json'},
        body: () => JSON.stringify({to: {user: values.recipient}, kind: 'text', ciphertext: values.ciphertext}),
      }
    default:
      return undefined
  }
}

/** Wall time of `replay` on a new connection each time, as a new CLI process would make it. */
async function timeRequests(runs: number, replay: Replay): Promise<number[]> {
  const times: number[] = []
  for (let i = 0; i <= runs; i++) {
    const url = new URL(replay.url)
    const client = new Client(url.origin)
    const headers = replay.method === 'POST' ? {...replay.headers, 'idempotency-key': `bench-cli-${runTag}-${performance.now()}`} : replay.headers
    const started = performance.now()
    const answer = await client.request({path: url.pathname + url.search, method: replay.method, headers, body: replay.body?.()})
    await answer.body.dump()
    const ms = performance.now() - started
    await client.close()
    if (answer.statusCode >= 400) throw new Error(`${replay.method} ${replay.url} answered ${answer.statusCode}`)
    // The first is a warm-up of this process's code path.
    if (i > 0) times.push(round(ms))
  }
  return times
}
