import {Errors, type Hook} from '@oclif/core'

import {jsonText, singleLine} from '../_lib/display.js'

/**
 * `fastchat sned bob hi`: one line that names the command probably meant, and
 * exit 1 (bad usage), as every other CLI error (commands/_lib/base-command.ts).
 * A hook of our own rather than @oclif/plugin-not-found: it would ask y/n on a
 * terminal and run the guess, and it is one more dependency for a few dozen lines.
 */

/** Edits (insert, delete, substitute, swap two neighbours) from `a` to `b`: `sned` is one from `send`. */
function distance(a: string, b: string): number {
  // d[i][j]: the edits from the first i characters of a to the first j of b.
  const d = Array.from({length: a.length + 1}, (_, i) => Array.from({length: b.length + 1}, (_, j) => Math.max(i, j)))
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1))
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1)
    }
  }
  return d[a.length][b.length]
}

/**
 * oclif hands over every word before the first flag as the id (`sned:bob:hi`):
 * each command is compared with as many leading words as it has. A guess may
 * be an edit away, or one per three letters; beyond that it would be noise.
 */
function closest(words: string[], commands: string[]): string | undefined {
  let best: {id: string; edits: number} | undefined
  for (const id of commands) {
    const length = id.split(':').length
    if (length > words.length) continue
    const edits = distance(words.slice(0, length).join(':'), id)
    if (edits > Math.max(1, Math.floor(id.length / 3))) continue
    if (!best || edits < best.edits || (edits === best.edits && id.length > best.id.length)) best = {id, edits}
  }
  return best?.id
}

const hook: Hook.CommandNotFound = async function ({id, argv, config}) {
  const words = id.split(':')
  const guess = closest(words, config.commandIDs)
  const topic = !guess && words.length > 1 && config.topics.some((t) => t.name === words[0]) ? words[0] : undefined
  const typed = words.slice(0, guess ? guess.split(':').length : topic ? 2 : 1).join(' ')
  const message = `fastchat has no command "${singleLine(typed)}".`
  const hint = guess
    ? `Did you mean \`fastchat ${guess.replaceAll(':', ' ')}\`?`
    : `\`fastchat ${topic ? `${topic} ` : ''}--help\` lists ${topic ? 'its' : 'the'} commands.`
  if (argv?.includes('--json')) process.stdout.write(`${jsonText({error: {message, hint, exit: 1, code: 'FC_USAGE'}}, 2)}\n`)
  else process.stderr.write(`Error: ${message} Hint: ${hint}\n`)
  // Already reported: oclif exits with the code and prints nothing more.
  throw new Errors.ExitError(1)
}

export default hook
