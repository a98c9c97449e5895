import {setTimeout as sleep} from 'node:timers/promises'

import {findDaemon} from '../client/daemon/connection.js'
import {isAlive, removeDaemonInfo} from '../client/daemon/daemon-file.js'
import {BaseCommand} from './_lib/base-command.js'

export interface LockResult {
  /** The agent or daemon stopped, or null when none ran. */
  stopped: {pid: number} | null
}

/** How often, and how long, to look for the daemon's process to be gone after it was asked to stop. */
const EXIT_CHECK_MS = 50
const EXIT_WAIT_MS = 10_000

export default class Lock extends BaseCommand<typeof Lock> {
  static override summary = 'Lock your key again: stop the agent of `fastchat unlock` (or the daemon) of this profile.'
  static override description = 'The next command that needs your key asks for the passphrase again. Nothing happens when no agent runs.'
  static override examples = ['<%= config.bin %> lock']

  async run(): Promise<LockResult> {
    const daemon = await findDaemon(this.store.dir)
    if (!daemon) {
      // A file left by a daemon that was killed: it names nothing.
      await removeDaemonInfo(this.store.dir, process.pid)
      this.log('Nothing to lock: no agent or daemon runs for this profile.')
      return {stopped: null}
    }
    const {pid} = daemon.info
    await daemon.shutdown()
    await daemon.close()
    // It answers before it stops: wait for it to be gone (it removes daemon.json itself), and make sure.
    for (let waited = 0; isAlive(pid) && waited < EXIT_WAIT_MS; waited += EXIT_CHECK_MS) await sleep(EXIT_CHECK_MS)
    if (isAlive(pid)) process.kill(pid, 'SIGTERM')
    await removeDaemonInfo(this.store.dir, process.pid)
    this.log(`Locked: the daemon (pid ${pid}) stopped; the next command asks for the passphrase.`)
    return {stopped: {pid}}
  }
}
