/**
 * Client-side cost of group messaging with epoch keys (crypto/groups.ts):
 *
 *   (a) send: one text message to a group of 2, 50 and 200 members
 *       (encryptGroupText under the epoch key), against a 1:1 message
 *       (encryptText to the recipient and oneself) and, for scale, against
 *       encrypting the message to every member's key (encryptText fan-out);
 *   (b) rekey: generateGroupKey + wrapGroupKey for 2, 50 and 200 members;
 *   (c) receive: unwrapGroupKey once per epoch, decryptGroupText per message
 *       (against decryptText for a 1:1 message).
 *
 * Members are the fixture keys (alice, bob, carol, mallory) plus keys made with
 * crypto/'s generateKeyPair; making and unlocking them is setup, not measured.
 * Parsed public keys are cached by crypto/ (public-key-cache.ts), and the
 * warm-up fills that cache, as it would be in a long-running client.
 *
 *   node --import tsx bench/crypto-groups.ts [--iterations N] [--json FILE]
 */
import {readFile, writeFile} from 'node:fs/promises'
import {arch, cpus, platform} from 'node:os'
import {performance} from 'node:perf_hooks'
import {pathToFileURL} from 'node:url'

import {
  decryptGroupText,
  decryptText,
  encryptGroupText,
  encryptText,
  generateGroupKey,
  generateKeyPair,
  unlockPrivateKey,
  unwrapGroupKey,
  wrapGroupKey,
  type UnlockedKey,
} from '../crypto/index.js'

const GROUP_SIZES = [2, 50, 200] as const
const FIXTURES = ['alice', 'bob', 'carol', 'mallory'] as const
const FIXTURE_PASSPHRASE = 'correct horse battery staple'
/** A typical chat line (~120 bytes of UTF-8). */
const TEXT = 'Are we still on for Thursday? I can bring the projector, and the slides are in the shared folder. ☕'

export interface Stats {
  /** Milliseconds. */
  median: number
  p95: number
  min: number
  max: number
  runs: number
}

export interface Result {
  env: {node: string; openpgp: string | null; platform: string; cpu: string; cpus: number}
  iterations: number
  send: {
    /** encryptText to [recipient, self]. */
    oneToOne: {ms: Stats; bytes: number}
    groups: Array<{
      members: number
      /** encryptGroupText under the epoch key: independent of `members` by construction. */
      ms: Stats
      bytes: number
      /** For scale only: encryptText to every member's key (what a group without a shared key would cost per message). */
      fanOut: {ms: Stats; bytes: number}
    }>
  }
  rekey: Array<{
    members: number
    /** generateGroupKey + wrapGroupKey. */
    ms: Stats
    /** Sum of the armored wrapped keys: what the client uploads. */
    uploadBytes: number
  }>
  receive: {
    /** unwrapGroupKey of one's own copy, once per epoch. */
    unwrapMs: Stats
    /** decryptGroupText per group message. */
    decryptGroupMs: Stats
    /** decryptText of a 1:1 message, for comparison. */
    decryptOneToOneMs: Stats
  }
  /** Whole run, setup included. */
  totalSeconds: number
}

interface Member {
  username: string
  publicKey: string
}

export async function runCryptoGroupsBench(opts: {iterations?: number; log?: (line: string) => void} = {}): Promise<Result> {
  const iterations = Math.max(1, Math.floor(opts.iterations ?? 200))
  const warmUp = Math.max(5, Math.ceil(iterations / 10))
  const rekeyRuns = 9
  const fanOutRuns = 5
  const log = opts.log ?? (() => {})
  const started = performance.now()

  // --- setup (not measured) ---
  log('setup: unlocking the fixture keys, making member keys...')
  const fixtures = await Promise.all(FIXTURES.map((name) => loadFixture(name)))
  const [alice, bob] = fixtures as [Fixture, Fixture, ...Fixture[]]
  const maxMembers = Math.max(...GROUP_SIZES)
  const generated = await Promise.all(
    Array.from({length: maxMembers - fixtures.length}, async (_, index) => {
      const username = `member${String(index + 1).padStart(3, '0')}`
      const pair = await generateKeyPair({username, passphrase: 'bench passphrase'})
      return {username, publicKey: pair.publicKey}
    }),
  )
  // alice sends and rekeys; bob receives. Both are in every group.
  const everyone: Member[] = [...fixtures.map(({username, publicKey}) => ({username, publicKey})), ...generated]
  const membersOf = (size: number): Record<string, string> => Object.fromEntries(everyone.slice(0, size).map((member) => [member.username, member.publicKey]))
  log(`setup: ${everyone.length} member keys ready (${seconds(started)} s)`)

  // --- (a) send ---
  const oneToOne = await encryptText({text: TEXT, to: [bob.publicKey, alice.publicKey], signer: alice.unlocked})
  const oneToOneMs = await measure(iterations, warmUp, () => encryptText({text: TEXT, to: [bob.publicKey, alice.publicKey], signer: alice.unlocked}))
  const groups: Result['send']['groups'] = []
  for (const size of GROUP_SIZES) {
    const key = generateGroupKey(`bench-${size}`, 1)
    const members = membersOf(size)
    const ciphertext = await encryptGroupText({text: TEXT, key, signer: alice.unlocked})
    const ms = await measure(iterations, warmUp, () => encryptGroupText({text: TEXT, key, signer: alice.unlocked}))
    const memberKeys = Object.values(members)
    const fanOutCiphertext = await encryptText({text: TEXT, to: memberKeys, signer: alice.unlocked})
    const fanOutMs = await measure(fanOutRuns, 1, () => encryptText({text: TEXT, to: memberKeys, signer: alice.unlocked}))
    groups.push({members: size, ms, bytes: ciphertext.length, fanOut: {ms: fanOutMs, bytes: fanOutCiphertext.length}})
    log(`send: ${size} members done (${seconds(started)} s)`)
  }

  // --- (b) rekey ---
  const rekey: Result['rekey'] = []
  for (const size of GROUP_SIZES) {
    const members = membersOf(size)
    let uploadBytes = 0
    let epoch = 0
    const ms = await measure(rekeyRuns, 2, async () => {
      const key = generateGroupKey(`bench-rekey-${size}`, ++epoch)
      const wrapped = await wrapGroupKey({key, members, signer: alice.unlocked})
      uploadBytes = Object.values(wrapped).reduce((sum, armored) => sum + armored.length, 0)
    })
    rekey.push({members: size, ms, uploadBytes})
    log(`rekey: ${size} members done (${seconds(started)} s)`)
  }

  // --- (c) receive ---
  const group = 'bench-receive'
  const epochKey = generateGroupKey(group, 7)
  const wrapped = await wrapGroupKey({key: epochKey, members: membersOf(2), signer: alice.unlocked})
  const unwrapMs = await measure(Math.max(20, Math.ceil(iterations / 10)), 3, () =>
    unwrapGroupKey({armored: wrapped.bob!, key: bob.unlocked, signerPublicKey: alice.publicKey, group, epoch: 7}),
  )
  const bobsKey = await unwrapGroupKey({armored: wrapped.bob!, key: bob.unlocked, signerPublicKey: alice.publicKey, group, epoch: 7})
  const groupMessage = await encryptGroupText({text: TEXT, key: epochKey, signer: alice.unlocked})
  const decryptGroupMs = await measure(iterations, warmUp, () => decryptGroupText({armored: groupMessage, key: bobsKey, senderPublicKey: alice.publicKey}))
  const decryptOneToOneMs = await measure(iterations, warmUp, () => decryptText({armored: oneToOne, key: bob.unlocked, senderPublicKey: alice.publicKey}))
  log(`receive: done (${seconds(started)} s)`)

  return {
    env: {node: process.version, openpgp: await openpgpVersion(), platform: `${platform()} ${arch()}`, cpu: cpus()[0]?.model ?? 'unknown', cpus: cpus().length},
    iterations,
    send: {oneToOne: {ms: oneToOneMs, bytes: oneToOne.length}, groups},
    rekey,
    receive: {unwrapMs, decryptGroupMs, decryptOneToOneMs},
    totalSeconds: Number(seconds(started)),
  }
}

/** The figures as a compact text table. */
export function formatCryptoGroupsResult(result: Result): string {
  const rows: string[][] = [['', 'members', 'median ms', 'p95 ms', 'runs', 'bytes']]
  const row = (label: string, members: number | string, stats: Stats, bytes: number | string): void => {
    rows.push([label, String(members), stats.median.toFixed(2), stats.p95.toFixed(2), String(stats.runs), String(bytes)])
  }
  row('send 1:1 encryptText (to + self)', 2, result.send.oneToOne.ms, result.send.oneToOne.bytes)
  for (const group of result.send.groups) row('send encryptGroupText', group.members, group.ms, group.bytes)
  for (const group of result.send.groups) row('  (for scale) encryptText to all', group.members, group.fanOut.ms, group.fanOut.bytes)
  for (const rekey of result.rekey) row('rekey generate+wrapGroupKey', rekey.members, rekey.ms, `${rekey.uploadBytes} up`)
  row('receive unwrapGroupKey (per epoch)', '-', result.receive.unwrapMs, '')
  row('receive decryptGroupText', '-', result.receive.decryptGroupMs, '')
  row('receive 1:1 decryptText', '-', result.receive.decryptOneToOneMs, '')
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((cells) => cells[column]!.length)))
  const lines = rows.map((cells) => cells.map((cell, column) => (column === 0 ? cell.padEnd(widths[column]!) : cell.padStart(widths[column]!))).join('  '))
  lines.splice(1, 0, widths.map((width) => '-'.repeat(width)).join('  '))
  const {env} = result
  lines.push('', `node ${env.node}, openpgp ${env.openpgp ?? '?'}, ${env.platform}, ${env.cpus} x ${env.cpu}; ${result.totalSeconds} s in all`)
  return lines.join('\n')
}

interface Fixture {
  username: string
  publicKey: string
  unlocked: UnlockedKey
}

async function loadFixture(name: string): Promise<Fixture> {
  const folder = new URL('../fixtures/keys/', import.meta.url)
  const [publicKey, privateKey] = await Promise.all([readFile(new URL(`${name}.pub.asc`, folder), 'utf8'), readFile(new URL(`${name}.key.asc`, folder), 'utf8')])
  return {username: name, publicKey, unlocked: await unlockPrivateKey(privateKey, FIXTURE_PASSPHRASE)}
}

/** Runs `task` `warmUp` times unmeasured, then `runs` times one after another, timing each. */
async function measure(runs: number, warmUp: number, task: () => Promise<unknown>): Promise<Stats> {
  for (let i = 0; i < warmUp; i++) await task()
  const times: number[] = []
  for (let i = 0; i < runs; i++) {
    const start = performance.now()
    await task()
    times.push(performance.now() - start)
  }
  times.sort((a, b) => a - b)
  const at = (q: number): number => times[Math.min(times.length - 1, Math.ceil(q * times.length) - 1)]!
  return {median: round(median(times)), p95: round(at(0.95)), min: round(times[0]!), max: round(times.at(-1)!), runs}
}

function median(sorted: number[]): number {
  const middle = sorted.length >> 1
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000
}

function seconds(since: number): string {
  return ((performance.now() - since) / 1000).toFixed(1)
}

async function openpgpVersion(): Promise<string | null> {
  try {
    const text = await readFile(new URL('../node_modules/openpgp/package.json', import.meta.url), 'utf8')
    return (JSON.parse(text) as {version?: string}).version ?? null
  } catch {
    return null
  }
}

function parseArgs(argv: string[]): {iterations?: number; json?: string} {
  const out: {iterations?: number; json?: string} = {}
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    const [flag, inline] = arg.includes('=') ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)] : [arg, undefined]
    const value = (): string => {
      const next = inline ?? argv[++i]
      if (next === undefined) throw new Error(`${flag} needs a value`)
      return next
    }
    if (flag === '--json') out.json = value()
    else if (flag === '--iterations') {
      const n = Number(value())
      if (!Number.isInteger(n) || n < 1) throw new Error('--iterations must be a positive integer')
      out.iterations = n
    } else throw new Error(`Unknown argument: ${arg} (usage: bench/crypto-groups.ts [--iterations N] [--json FILE])`)
  }
  return out
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2))
  const result = await runCryptoGroupsBench({iterations: args.iterations, log: (line) => console.error(line)})
  console.log(formatCryptoGroupsResult(result))
  if (args.json) {
    await writeFile(args.json, `${JSON.stringify(result, null, 2)}\n`)
    console.error(`wrote ${args.json}`)
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((error: unknown) => {
    console.error(error)
    process.exitCode = 1
  })
}
