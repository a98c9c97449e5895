import {Flags} from '@oclif/core'

import {BaseCommand} from '../_lib/base-command.js'

export interface KeysExportResult {
  publicKey?: string
  privateKey?: string
}

export default class KeysExport extends BaseCommand<typeof KeysExport> {
  static override summary = 'Print your armored public key, or with --private your passphrase-encrypted private key.'
  static override description = 'The private key stays encrypted with your passphrase; keep the export as safe as the profile itself.'
  static override examples = ['<%= config.bin %> keys export > alice.pub.asc', '<%= config.bin %> keys export --private > alice.key.asc']

  static override flags = {
    private: Flags.boolean({summary: 'Export the (passphrase-encrypted) private key instead.'}),
  }

  async run(): Promise<KeysExportResult> {
    const keys = await this.store.requireKeys()
    const armored = this.flags.private ? keys.privateKey : keys.publicKey
    if (this.flags.private && process.stdout.isTTY) this.note('This is your private key, encrypted with your passphrase. Do not share it.')
    if (!this.jsonEnabled()) process.stdout.write(armored.endsWith('\n') ? armored : `${armored}\n`)
    return this.flags.private ? {privateKey: armored} : {publicKey: armored}
  }
}
