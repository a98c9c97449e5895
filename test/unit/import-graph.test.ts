import {readdirSync, readFileSync} from 'node:fs'
import {dirname, join, relative, resolve} from 'node:path'
import {fileURLToPath} from 'node:url'

import {expect} from 'chai'

/**
 * Issue 13: the client library and the protocol are for any program, so
 * nothing they load may come from the CLI (commands/, oclif) or the servers.
 * Follows every relative import from client/ and protocol/, transitively.
 */

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..')
const IMPORT = /(?:^|\n)\s*(?:import|export)\s[^'"]*?from\s+['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g

/** The module specifiers `file` imports. */
export function importsOf(source: string): string[] {
  return [...source.matchAll(IMPORT)].map((match) => match[1] ?? match[2]!)
}

const tsFiles = (dir: string): string[] =>
  readdirSync(join(ROOT, dir), {withFileTypes: true}).flatMap((entry) =>
    entry.isDirectory() ? tsFiles(join(dir, entry.name)) : entry.name.endsWith('.ts') ? [join(dir, entry.name)] : [],
  )

/** Every file reachable from `roots`, with the chain of imports that reaches it. */
function reachable(roots: string[]): Map<string, string[]> {
  const seen = new Map<string, string[]>(roots.map((file) => [file, [file]]))
  const queue = [...roots]
  while (queue.length > 0) {
    const file = queue.shift()!
    for (const specifier of importsOf(readFileSync(join(ROOT, file), 'utf8'))) {
      const target = specifier.startsWith('.') ? relative(ROOT, resolve(ROOT, dirname(file), specifier.replace(/\.js$/, '.ts'))) : specifier
      if (seen.has(target)) continue
      seen.set(target, [...seen.get(file)!, target])
      if (specifier.startsWith('.')) queue.push(target)
    }
  }
  return seen
}

const FORBIDDEN = [/^@oclif\//, /^commands\//, /^server\//, /^superserver\//, /^storage\//, /^cli-progress$/, /^express$/, /^typeorm$/, /^pg$/]

describe('import graph', () => {
  it('client/ and protocol/ reach nothing of the CLI, oclif or the servers', () => {
    const graph = reachable([...tsFiles('client'), ...tsFiles('protocol')])
    const bad = [...graph.entries()].filter(([target]) => FORBIDDEN.some((pattern) => pattern.test(target))).map(([, chain]) => chain.join(' -> '))
    expect(bad, 'forbidden imports').to.deep.equal([])
    // The walk found the library's own files: a broken regex would find nothing and pass.
    expect(graph.has('client/fastchat-client.ts') && graph.has('crypto/index.ts') && graph.has('protocol/events.ts')).to.equal(true)
  })

  it('sees an import of the CLI where there is one', () => {
    expect(importsOf("import {x} from '../commands/_lib/display.js'\nexport {y} from '@oclif/core'\nconst z = await import('./a.js')")).to.deep.equal([
      '../commands/_lib/display.js',
      '@oclif/core',
      './a.js',
    ])
  })
})
