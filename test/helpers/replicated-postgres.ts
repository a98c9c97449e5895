import {execFile} from 'node:child_process'
import {existsSync, readdirSync} from 'node:fs'
import {appendFile, chmod, chown, mkdtemp, readFile, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {promisify} from 'node:util'

import pg from 'pg'

import {freePort} from '../../storage/embedded.js'
import {eventually} from './processes.js'

/**
 * Two real PostgreSQL servers in a temp folder: a primary and a synchronous
 * standby streaming from it, as docs/operations.md ("PostgreSQL: several hosts
 * and failover") sets them up. For the failover test; needs the server
 * binaries (initdb, pg_ctl, pg_basebackup, postgres) and, when run as root
 * (which PostgreSQL refuses), the `postgres` OS user.
 */

const run = promisify(execFile)
const BINARIES = ['initdb', 'pg_ctl', 'pg_basebackup', 'postgres']
/** The standby's name in synchronous_standby_names and its primary_conninfo. */
export const STANDBY_NAME = 'fastchat_standby'

export interface PostgresSetup {
  bin: string
  /** `runuser -u postgres --` when we are root, else nothing. */
  asUser: string[]
}

/** Where the server binaries are, or why the replicated pair cannot run here. */
export async function findPostgres(): Promise<PostgresSetup | {missing: string}> {
  const versions = existsSync('/usr/lib/postgresql')
    ? readdirSync('/usr/lib/postgresql')
        .filter((name) => /^\d+$/.test(name))
        .sort((a, b) => Number(b) - Number(a))
        .map((version) => `/usr/lib/postgresql/${version}/bin`)
    : []
  const candidates = [process.env.FASTCHAT_TEST_PG_BIN, ...versions, '/usr/local/bin', '/usr/bin'].filter((dir): dir is string => Boolean(dir))
  const bin = candidates.find((dir) => BINARIES.every((name) => existsSync(join(dir, name))))
  if (!bin) return {missing: `no directory with ${BINARIES.join(', ')} among ${candidates.join(', ')} (set FASTCHAT_TEST_PG_BIN)`}
  if (process.getuid?.() !== 0) return {bin, asUser: []}
  try {
    await run('id', ['-u', 'postgres'])
  } catch {
    return {missing: 'running as root, and there is no `postgres` OS user to run PostgreSQL as'}
  }
  return {bin, asUser: ['runuser', '-u', 'postgres', '--']}
}

export interface Instance {
  name: string
  port: number
  dataDir: string
  /** A client connection to database `database` of this instance. */
  query<T extends pg.QueryResultRow>(sql: string, database?: string): Promise<T[]>
}

export interface ReplicatedPair {
  root: string
  primary: Instance
  standby: Instance
  /** Stops an instance as a crash would (`pg_ctl stop -m immediate`). */
  kill(instance: Instance): Promise<void>
  /** Makes the standby a primary, waiting until it takes writes. */
  promote(): Promise<void>
  /** Stops both (whatever state they are in), checks no process of theirs is left, deletes the folder. */
  destroy(): Promise<void>
}

export async function startReplicatedPair(setup: PostgresSetup): Promise<ReplicatedPair> {
  const root = await mkdtemp(join(tmpdir(), 'fastchat-failover-'))
  const ctl = (...args: string[]) => exec(setup, 'pg_ctl', args)
  const instance = (name: string, port: number): Instance => ({
    name,
    port,
    dataDir: join(root, name),
    async query<T extends pg.QueryResultRow>(sql: string, database = 'postgres') {
      const client = new pg.Client({host: '127.0.0.1', port, user: 'postgres', database, connectionTimeoutMillis: 3_000})
      client.on('error', () => undefined)
      await client.connect()
      try {
        return (await client.query<T>(sql)).rows
      } finally {
        await client.end()
      }
    },
  })
  const primary = instance('primary', await freePort())
  const standby = instance('standby', await freePort())
  const started: Instance[] = []
  /** The postmasters' pids, to find their children (whose command lines do not name the folder). */
  const postmasters: number[] = []
  const start = async (target: Instance) => {
    await ctl('start', '-D', target.dataDir, '-l', join(root, `${target.name}.log`), '-w', '-t', '60')
    started.push(target)
    postmasters.push(Number.parseInt(await readFile(join(target.dataDir, 'postmaster.pid'), 'utf8'), 10))
  }
  const pair: ReplicatedPair = {
    root,
    primary,
    standby,
    async kill(target) {
      await ctl('stop', '-D', target.dataDir, '-m', 'immediate', '-w')
    },
    async promote() {
      await ctl('promote', '-D', standby.dataDir, '-w')
    },
    async destroy() {
      for (const target of started) await ctl('stop', '-D', target.dataDir, '-m', 'immediate', '-w').catch(() => undefined)
      const left = await processesOf(root, postmasters)
      for (const pid of left) process.kill(pid, 'SIGKILL')
      await rm(root, {recursive: true, force: true})
      if (left.length > 0) throw new Error(`PostgreSQL processes outlived pg_ctl stop (killed): ${left.join(', ')}`)
    },
  }
  try {
    if (setup.asUser.length > 0) {
      const [uid, gid] = await Promise.all([run('id', ['-u', 'postgres']), run('id', ['-g', 'postgres'])])
      await chown(root, Number(uid.stdout), Number(gid.stdout))
    }
    await chmod(root, 0o700)
    await exec(setup, 'initdb', ['-D', primary.dataDir, '-U', 'postgres', '-A', 'trust', '--no-sync', '-E', 'UTF8', '--no-locale'])
    await appendFile(
      join(primary.dataDir, 'postgresql.conf'),
      [
        "listen_addresses = '127.0.0.1'",
        `port = ${primary.port}`,
        `unix_socket_directories = '${root}'`,
        'max_connections = 60',
        'wal_level = replica',
        'max_wal_senders = 4',
        // A commit returns once the standby has the WAL on disk: a 201 is on two machines.
        `synchronous_standby_names = '${STANDBY_NAME}'`,
        'synchronous_commit = on',
        '',
      ].join('\n'),
    )
    await start(primary)
    await exec(setup, 'pg_basebackup', [
      '-d',
      `host=127.0.0.1 port=${primary.port} user=postgres application_name=${STANDBY_NAME}`,
      '-D',
      standby.dataDir,
      '-R', // standby.signal, and primary_conninfo with our application_name
      '-X',
      'stream',
      '-c',
      'fast',
    ])
    // Alone after its promotion, the standby must not wait for a standby of its own (docs/operations.md).
    await appendFile(join(standby.dataDir, 'postgresql.conf'), `port = ${standby.port}\nsynchronous_standby_names = ''\n`)
    await start(standby)
    await eventually(
      async () => (await primary.query<{sync_state: string}>(`SELECT sync_state FROM pg_stat_replication WHERE application_name = '${STANDBY_NAME}'`))[0]?.sync_state === 'sync',
      'the standby to stream synchronously',
      30_000,
    )
  } catch (error) {
    await pair.destroy().catch(() => undefined)
    throw error
  }
  return pair
}

async function exec(setup: PostgresSetup, binary: string, args: string[]): Promise<string> {
  const [command, ...rest] = [...setup.asUser, join(setup.bin, binary), ...args]
  try {
    // cwd: the postgres user may not be able to enter ours.
    return (await run(command!, rest, {cwd: tmpdir(), timeout: 90_000})).stdout
  } catch (error) {
    const {stderr} = error as {stderr?: string}
    throw new Error(`${binary} ${args[0] ?? ''} failed: ${stderr?.trim() || (error as Error).message}`)
  }
}

/**
 * Pids of the live processes whose command line names `dir` (a postmaster:
 * `postgres -D <dir>/...`), or PostgreSQL processes that are, or are children
 * of, `postmasters`. Zombies are not counted: they run nothing, and where pid 1
 * does not reap (a container) they stay listed.
 */
async function processesOf(dir: string, postmasters: number[]): Promise<number[]> {
  const {stdout} = await run('ps', ['-eo', 'pid=,ppid=,stat=,args='])
  return stdout
    .split('\n')
    .map((line) => /^\s*(\d+)\s+(\d+)\s+(\S+)\s(.*)$/.exec(line))
    .filter((match): match is RegExpExecArray => match !== null && !match[3]!.startsWith('Z'))
    .filter(([, pid, ppid, , args]) => args!.includes(dir) || ((postmasters.includes(Number(pid)) || postmasters.includes(Number(ppid))) && /postgres/.test(args!)))
    .map(([, pid]) => Number(pid))
    .filter((pid) => pid !== process.pid)
}
