import {chmod, mkdtemp, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {CLI} from './processes.js'

/**
 * A directory holding a `fastchat` that runs the built CLI, to put first on
 * PATH: what `npm link` gives a reader of the README and of docs/api.md.
 */
export async function cliOnPath(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'fc-bin-'))
  await writeFile(join(dir, 'fastchat'), `#!/bin/sh\nexec "${process.execPath}" "${CLI}" "$@"\n`)
  await chmod(join(dir, 'fastchat'), 0o755)
  return dir
}
