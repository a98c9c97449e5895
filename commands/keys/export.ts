import {open} from 'node:fs/promises'

import {Flags} from '@oclif/core'

import {BaseCommand} from '../_lib/base-command.js'
import {CliFailure, Exit} from '../_lib/errors.js'

export interface KeysExportResult {
  publicKey?: string
  privateKey?: string
  /** --output: the file written. */
  file?: string
}

export default class KeysExport extends BaseCommand<typeof KeysExport> {
  static override summary = 'Print your armored public key, or with --private your passphrase-encrypted private key.'
  static override description =
    'The private key stays encrypted with your passphrase; keep the export as safe as the profile itself. ' +
    'With --output FILE it is written to a new file that only you can read (mode 0600, whatever the umask); ' +
    'redirecting stdout (`> file`) makes a file with the permissions of your umask, often readable by everyone.'

  static override examples = [
    '<%= config.bin %> keys export > alice.pub.asc',
    '<%= config.bin %> keys export --private --output alice.key.asc',
  ]

  static override flags = {
    private: Flags.boolean({summary: 'Export the (passphrase-encrypted) private key instead.'}),
    output: Flags.string({
      char: 'o',
      summary: 'Write to this new file (never over an existing one), readable only by you.',
      helpValue: 'FILE',
    }),
  }

  async run(): Promise<KeysExportResult> {
    const keys = await this.store.requireKeys()
    const armored = this.flags.private ? keys.privateKey : keys.publicKey
    const text = armored.endsWith('\n') ? armored : `${armored}\n`
    const exported = this.flags.private ? {privateKey: armored} : {publicKey: armored}
    if (this.flags.output) {
      await writeNewFile(this.flags.output, text)
      this.log(`Wrote your ${this.flags.private ? 'private' : 'public'} key to ${this.flags.output} (mode 0600).`)
      return {...exported, file: this.flags.output}
    }
    if (this.flags.private && process.stdout.isTTY) this.note('This is your private key, encrypted with your passphrase. Do not share it.')
    if (!this.jsonEnabled()) process.stdout.write(text)
    return exported
  }
}

/**
 * Creates `path` (O_CREAT|O_EXCL: never an existing file, nor through a
 * symlink planted there) with mode 0600. open()'s mode is cut by the umask,
 * which can only take bits away, so 0600 stays 0600 or less; chmod makes it
 * exactly 0600 before a byte is written.
 */
async function writeNewFile(path: string, text: string): Promise<void> {
  let file
  try {
    file = await open(path, 'wx', 0o600)
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    if (code === 'EEXIST') throw new CliFailure(`${path} exists; FastChat does not overwrite it.`, Exit.input, 'Choose another file name, or remove that file first.')
    throw new CliFailure(`Cannot create ${path} (${code ?? (error as Error).message}).`, Exit.input)
  }
  try {
    await file.chmod(0o600)
    await file.writeFile(text)
  } finally {
    await file.close()
  }
}
