import {randomBytes} from 'node:crypto'
import {readFile, rename, rm, writeFile} from 'node:fs/promises'

import {daemonFile, type DaemonInfo, daemonInfo} from './protocol.js'

/**
 * `<profile>/daemon.json`: that a daemon runs for the profile, where, and
 * its token. 0600 like the rest of the profile: whoever can read it can use
 * the daemon, and so the unlocked key (docs/daemon.md, "Security").
 */

/** The file, if there is one that makes sense (a stale one is for the caller to judge: isAlive, then GET /v1/status). */
export async function readDaemonInfo(profileDir: string): Promise<DaemonInfo | undefined> {
  const text = await readFile(daemonFile(profileDir), 'utf8').catch(() => undefined)
  if (text === undefined) return undefined
  try {
    const parsed = daemonInfo.safeParse(JSON.parse(text))
    return parsed.success ? parsed.data : undefined
  } catch {
    return undefined
  }
}

/** Written whole or not at all, 0600 from the start: a reader never sees half a token. */
export async function writeDaemonInfo(profileDir: string, info: DaemonInfo): Promise<void> {
  const file = daemonFile(profileDir)
  const temp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`
  try {
    await writeFile(temp, `${JSON.stringify(info, null, 2)}\n`, {mode: 0o600, flag: 'wx'})
    await rename(temp, file)
  } catch (error) {
    await rm(temp, {force: true})
    throw error
  }
}

/** Removes the file if it is the one of `pid` (or names a process that is gone): never a newer daemon's. */
export async function removeDaemonInfo(profileDir: string, pid: number): Promise<void> {
  const info = await readDaemonInfo(profileDir)
  if (info && info.pid !== pid && isAlive(info.pid)) return
  await rm(daemonFile(profileDir), {force: true})
}

/** Whether a process with this pid exists (EPERM: it does, as another user). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}
