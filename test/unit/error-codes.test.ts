import {existsSync} from 'node:fs'
import {readdir, readFile} from 'node:fs/promises'
import {join} from 'node:path'

import {expect} from 'chai'

import {type ErrorCode, errorCodes} from '../../protocol/errors.js'

const ROOT = new URL('../..', import.meta.url).pathname
/** Where codes are thrown or switched on; the servers' folders first. */
const SERVER_DIRS = ['server', 'superserver', 'storage']
const SOURCE_DIRS = [...SERVER_DIRS, 'crypto', 'protocol', 'client', 'commands']
const CLI_HEADING = '\n## Codes of the CLI'

const isTableCode = (code: string): code is ErrorCode => Object.hasOwn(errorCodes, code)

/** The codes a source text writes as string literals ('FC_X', "FC_X", `FC_X`); a code named in a comment is not one. */
function codeLiterals(source: string): string[] {
  return [...source.matchAll(/(['"`])(FC_[A-Z0-9_]+)\1/g)].map((match) => match[2]!)
}

interface DocumentedRow {
  code: string
  table: 'server' | 'cli'
  /** The second column: the status in the servers' table, the exit code in the CLI's. */
  second: string
}

/** The rows of docs/errors.md's tables whose first cell is a backticked FC_ code. */
function documentedRows(markdown: string): DocumentedRow[] {
  const cliStart = markdown.indexOf(CLI_HEADING)
  const rows: DocumentedRow[] = []
  for (const match of markdown.matchAll(/^\|\s*`(FC_[A-Z0-9_]+)`\s*\|\s*([^|]*?)\s*\|/gm)) {
    rows.push({code: match[1]!, table: cliStart >= 0 && match.index > cliStart ? 'cli' : 'server', second: match[2]!})
  }
  return rows
}

async function sourceFiles(dir: string): Promise<string[]> {
  if (!existsSync(join(ROOT, dir))) return [] // client/ is new
  const names = await readdir(join(ROOT, dir), {recursive: true})
  return names.filter((name) => name.endsWith('.ts')).map((name) => join(dir, name))
}

/** Every code literal of the source, with where it is written. */
async function codesInSource(): Promise<{file: string; code: string}[]> {
  const found: {file: string; code: string}[] = []
  for (const dir of SOURCE_DIRS) {
    for (const file of await sourceFiles(dir)) {
      for (const code of codeLiterals(await readFile(join(ROOT, file), 'utf8'))) found.push({file, code})
    }
  }
  return found
}

const readDocs = () => readFile(join(ROOT, 'docs/errors.md'), 'utf8')

/** The one table of error codes (protocol/errors.ts) against the source and docs/errors.md. */
describe('error codes', () => {
  it('finds code literals and table rows, and nothing else', () => {
    const source = "throw new AppError('FC_A', 'x') // FC_IN_A_COMMENT\nconst b = \"FC_B_2\"; case `FC_C`: 'FC_' + x; 'FC_D\""
    expect(codeLiterals(source)).to.deep.equal(['FC_A', 'FC_B_2', 'FC_C'])

    const markdown = [
      '| code | status | when |',
      '| `FC_ONE` | 404 | text with `FC_TWO` |',
      'A sentence on `FC_THREE`.',
      CLI_HEADING,
      '| `FC_FOUR` | — | … |',
      '| `HTTP_<status>` | by status | … |',
    ].join('\n')
    expect(documentedRows(markdown)).to.deep.equal([
      {code: 'FC_ONE', table: 'server', second: '404'},
      {code: 'FC_FOUR', table: 'cli', second: '—'},
    ])
  })

  it('has every code the source writes in the table, the servers\' as server codes', async () => {
    const found = await codesInSource()
    expect(new Set(found.map(({code}) => code)).size, 'codes found').to.be.greaterThan(40)
    expect(found.filter(({code}) => !isTableCode(code)).map(({file, code}) => `${file}: ${code}`), 'not in protocol/errors.ts').to.deep.equal([])
    const clientOnly = found.filter(({file, code}) => SERVER_DIRS.some((dir) => file.startsWith(`${dir}/`)) && isTableCode(code) && errorCodes[code].side === 'client')
    expect(clientOnly.map(({file, code}) => `${file}: ${code}`), "a server's code the table calls the client's").to.deep.equal([])
  })

  it('documents every code of the table once, in the table of its side', async () => {
    const rows = documentedRows(await readDocs())
    const count = new Map<string, number>()
    for (const {code} of rows) count.set(code, (count.get(code) ?? 0) + 1)

    expect([...count].filter(([, n]) => n > 1).map(([code]) => code), 'documented more than once').to.deep.equal([])
    expect(Object.keys(errorCodes).filter((code) => !count.has(code)), 'not documented in docs/errors.md').to.deep.equal([])
    expect(rows.filter(({code}) => !isTableCode(code)).map(({code}) => code), 'documented, not in protocol/errors.ts').to.deep.equal([])
    const misplaced = rows.filter(({code, table}) => isTableCode(code) && (errorCodes[code].side === 'client') !== (table === 'cli'))
    expect(misplaced.map(({code, table}) => `${code} in the ${table} table`), 'in the wrong table').to.deep.equal([])
  })

  it("gives each server code the status docs/errors.md gives it", async () => {
    const rows = documentedRows(await readDocs())
    const wrong = Object.entries(errorCodes).flatMap(([code, entry]) => {
      if (!('status' in entry)) return []
      const row = rows.find((candidate) => candidate.code === code)
      return row && row.second !== String(entry.status) ? [`${code}: ${entry.status} in the table, ${row.second} in the docs`] : []
    })
    expect(wrong).to.deep.equal([])
  })
})
