import {readFile} from 'node:fs/promises'
import {execFile} from 'node:child_process'
import {promisify} from 'node:util'

import {expect} from 'chai'

import {serverSettings} from '../../server/config.js'
import {superserverSettings} from '../../superserver/config.js'

/** The reference documents must not drift from the code they describe. */
describe('docs', () => {
  it('list every configuration variable of the chat server and superserver', async () => {
    const operations = await readFile(new URL('../../docs/operations.md', import.meta.url), 'utf8')
    for (const setting of [...Object.values(serverSettings), ...Object.values(superserverSettings)]) {
      expect(operations, setting.env).to.include(`\`${setting.env}\``)
    }
  })

  it('list every error code the servers can answer with', async () => {
    const errors = await readFile(new URL('../../docs/errors.md', import.meta.url), 'utf8')
    const {stdout} = await promisify(execFile)('grep', ['-rhoE', "'FC_[A-Z_]+'", 'server', 'superserver', 'storage'], {
      cwd: new URL('../..', import.meta.url).pathname,
    })
    const codes = new Set(stdout.split('\n').filter(Boolean).map((c) => c.replaceAll("'", '')))
    expect(codes.size).to.be.greaterThan(5)
    for (const code of codes) expect(errors, code).to.include(`\`${code}\``)
  })
})
