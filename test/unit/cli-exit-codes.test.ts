import {readFileSync} from 'node:fs'

import {expect} from 'chai'

import {FastChatError} from '../../client/errors.js'
import {describeFailure} from '../../commands/_lib/errors.js'

/**
 * docs/errors.md, "Codes of the CLI", gives each code the exit code scripts
 * can rely on; the CLI maps the library's codes to exit codes in one table
 * (commands/_lib/errors.ts). They must agree.
 */
describe('CLI exit codes', () => {
  const docs = readFileSync(new URL('../../docs/errors.md', import.meta.url), 'utf8')
  const section = docs.slice(docs.indexOf('## Codes of the CLI'))
  const rows = [...section.matchAll(/^\| `(FC_[A-Z0-9_]+)` \| (\d) \|/gm)].map((match) => ({code: match[1]!, exit: Number(match[2])}))

  it('reads the table', () => {
    expect(rows.length).to.be.greaterThan(20)
    expect(rows).to.deep.include({code: 'FC_KEY_CHANGED', exit: 4})
  })

  it('exits as documented for every code the client library throws', () => {
    const wrong = rows
      .map(({code, exit}) => ({code, documented: exit, actual: describeFailure(new FastChatError(code, 'something failed', {username: 'bob'})).exit}))
      .filter((row) => row.documented !== row.actual)
    expect(wrong).to.deep.equal([])
  })
})
