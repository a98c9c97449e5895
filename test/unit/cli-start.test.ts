import {execFile} from 'node:child_process'
import {dirname, join, resolve} from 'node:path'
import {fileURLToPath} from 'node:url'
import {promisify} from 'node:util'

import {expect} from 'chai'

/**
 * What a command loads before it does anything is part of every `fastchat
 * send` (docs/cli.md, "Start-up"). undici and rate-limiter-flexible serve
 * only the direct path, so they load when it is used, not with the commands.
 * Checked in a fresh Node on the built commands (npm test builds first):
 * the CommonJS packages a process loaded are in its require cache.
 */
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..')
const DIRECT_ONLY = ['undici', 'rate-limiter-flexible']

/** The npm packages (CommonJS) a fresh Node has loaded after `script` (ESM, run from the repository root). */
async function packagesAfter(script: string): Promise<string[]> {
  const program = `import {createRequire} from 'node:module'
${script}
const loaded = Object.keys(createRequire(import.meta.url).cache).filter((path) => path.includes('/node_modules/'))
console.log(JSON.stringify([...new Set(loaded.map((path) => path.split('/node_modules/').pop().split('/')[0]))]))`
  const {stdout} = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', program], {cwd: ROOT})
  return JSON.parse(stdout) as string[]
}

describe('CLI start-up: what the commands load', () => {
  it('loads undici and rate-limiter-flexible only with the direct path, not with send, inbox, listen or whoami', async () => {
    const commands = ['send', 'inbox', 'listen', 'whoami', 'history'].map((name) => join(ROOT, 'dist/commands', `${name}.js`))
    const loaded = await packagesAfter(commands.map((file) => `await import(${JSON.stringify(file)})`).join('\n'))
    for (const name of DIRECT_ONLY) expect(loaded, name).not.to.include(name)
    // The same check sees them once the direct path is used: a direct post loads undici, a peer endpoint the rate limiter.
    const peer = JSON.stringify(join(ROOT, 'dist/client/peer.js'))
    const used = await packagesAfter(
      `const peer = await import(${peer})\nawait peer.loadDirectTransport()\nconst endpoint = new peer.PeerEndpoint(() => undefined)\nawait endpoint.listen('127.0.0.1', 0)\nawait endpoint.close()`,
    )
    for (const name of DIRECT_ONLY) expect(used, name).to.include(name)
  })
})
