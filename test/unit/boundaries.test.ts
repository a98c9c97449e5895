import {execFile} from 'node:child_process'
import {promisify} from 'node:util'

import {expect} from 'chai'

/** Architectural rules, checked like a lint: a test that fails when a boundary is crossed. */
describe('module boundaries', () => {
  it('lets nothing but crypto/ import openpgp', async () => {
    const root = new URL('../..', import.meta.url).pathname
    const {stdout} = await promisify(execFile)(
      'grep', ['-rlE', `from ['"]openpgp|import\\(['"]openpgp|require\\(['"]openpgp`, 'bin', 'commands', 'protocol', 'server', 'superserver', 'storage', 'test', 'fixtures'],
      {cwd: root},
    ).catch((error: {code?: number; stdout?: string}) => (error.code === 1 ? {stdout: ''} : Promise.reject(error)))
    const offenders = stdout.split('\n').filter(Boolean)
    expect(offenders).to.deep.equal([])
  })
})
