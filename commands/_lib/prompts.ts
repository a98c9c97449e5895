import {createInterface} from 'node:readline'
import {Writable} from 'node:stream'

import {CliFailure, Exit} from './errors.js'

/**
 * Secrets come from the environment (scripts), one line of stdin
 * (--password-stdin), or a prompt with echo off on a terminal. They are never
 * taken from a flag's value: that would leave them in shell history and `ps`.
 */

const interactive = () => Boolean(process.stdin.isTTY && process.stderr.isTTY)

/**
 * The account password. `confirm` (registration): asked twice on a terminal.
 * `check` runs on it as soon as it is read, before the second prompt and
 * before anything else happens (a server asked, a key generated).
 */
export async function readPassword(options: {stdin: boolean; confirm?: boolean; check?: (password: string) => void}): Promise<string> {
  const checked = (password: string) => {
    options.check?.(password)
    return password
  }
  if (options.stdin) {
    const line = await readStdinLine()
    if (!line) throw new CliFailure('--password-stdin was given but stdin is empty.', Exit.input)
    return checked(line)
  }
  if (process.env.FASTCHAT_PASSWORD) return checked(process.env.FASTCHAT_PASSWORD)
  if (interactive()) {
    const password = checked(await hiddenPrompt('Password: '))
    if (options.confirm && (await hiddenPrompt('Repeat password: ')) !== password) throw new CliFailure('The passwords do not match.', Exit.input)
    return password
  }
  throw new CliFailure('No password given.', Exit.input, 'Set FASTCHAT_PASSWORD, pass --password-stdin, or run in a terminal to be asked.')
}

/**
 * A passphrase chosen for a key is at least this long (in characters): it is
 * all that protects the private key in a copied profile or export, where it
 * can be guessed offline at any speed.
 */
export const PASSPHRASE_MIN_CHARS = 8

function checkNewPassphrase(passphrase: string, from: string): void {
  if ([...passphrase].length < PASSPHRASE_MIN_CHARS) {
    throw new CliFailure(`The key passphrase${from} must be at least ${PASSPHRASE_MIN_CHARS} characters long.`, Exit.input, 'Choose a longer one; a few words work well.')
  }
}

/**
 * `confirm`: a passphrase being chosen for a new key: it must be long enough
 * (from FASTCHAT_PASSPHRASE too), and on a terminal it is asked twice, since
 * a mistyped passphrase locks the key for good. Unlocking an existing key
 * takes the passphrase it has, whatever its length.
 */
export async function readPassphrase(options: {confirm?: boolean} = {}): Promise<string> {
  if (process.env.FASTCHAT_PASSPHRASE) {
    if (options.confirm) checkNewPassphrase(process.env.FASTCHAT_PASSPHRASE, ' in FASTCHAT_PASSPHRASE')
    return process.env.FASTCHAT_PASSPHRASE
  }
  if (!interactive()) {
    throw new CliFailure('No passphrase for your private key.', Exit.input, 'Set FASTCHAT_PASSPHRASE, or run in a terminal to be asked.')
  }
  const passphrase = await hiddenPrompt('Key passphrase: ')
  if (!passphrase) throw new CliFailure('The passphrase must not be empty.', Exit.input)
  if (options.confirm) checkNewPassphrase(passphrase, '')
  if (options.confirm && (await hiddenPrompt('Repeat passphrase: ')) !== passphrase) {
    throw new CliFailure('The passphrases do not match.', Exit.input)
  }
  return passphrase
}

/** The whole of stdin, for `send bob -`. */
export async function readStdinText(): Promise<string> {
  const chunks: Buffer[] = []
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks).toString('utf8')
}

function readStdinLine(): Promise<string> {
  return new Promise((resolve) => {
    const rl = createInterface({input: process.stdin, terminal: false})
    let answered = false
    rl.once('line', (line) => {
      answered = true
      rl.close()
      resolve(line)
    })
    rl.once('close', () => {
      if (!answered) resolve('')
    })
  })
}

/** readline on the terminal with its output muted: the prompt is written once, the keys typed are not echoed. */
function hiddenPrompt(prompt: string): Promise<string> {
  process.stderr.write(prompt)
  const muted = new Writable({write: (_chunk, _encoding, done) => done()})
  const rl = createInterface({input: process.stdin, output: muted, terminal: true})
  return new Promise((resolve, reject) => {
    rl.once('line', (line) => {
      process.stderr.write('\n')
      rl.close()
      resolve(line)
    })
    rl.once('SIGINT', () => {
      process.stderr.write('\n')
      rl.close()
      reject(new CliFailure('Cancelled.', Exit.input))
    })
  })
}
