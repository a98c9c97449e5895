import {Flags} from '@oclif/core'

import {formatFingerprint, generateKeyPair} from '../../crypto/index.js'
import {BaseCommand} from '../_lib/base-command.js'
import {Exit} from '../_lib/errors.js'
import {readPassphrase} from '../_lib/prompts.js'

export interface KeysGenerateResult {
  fingerprint: string
  publicKey: string
  profile: string
}

export default class KeysGenerate extends BaseCommand<typeof KeysGenerate> {
  static override summary = 'Create a key pair in a profile that has none, and print the public key.'
  static override description =
    '`register` does this for you. Use it to register with another client (curl, see docs/api.md): publish the printed ' +
    'public key with POST /v1/users, then `fastchat login` with this profile.'

  static override examples = ['<%= config.bin %> keys generate --username alice --profile ./alice']

  static override flags = {
    username: Flags.string({summary: "The name on the key. Default: the profile's user."}),
  }

  async run(): Promise<KeysGenerateResult> {
    if (await this.store.privateKey()) {
      this.error(`There is already a private key in ${this.store.dir}.`, {
        exit: Exit.input,
        suggestions: ['Use another --profile DIR; FastChat never overwrites a key.'],
      })
    }
    const username = this.flags.username ?? (await this.store.profile())?.username
    if (!username) this.error('Which username is this key for?', {exit: Exit.input, suggestions: ['Run `fastchat keys generate --username NAME`.']})
    const keys = await generateKeyPair({username, passphrase: await readPassphrase({confirm: true})})
    await this.store.saveKeys(keys)
    this.note(`Created a key pair in ${this.store.dir}, fingerprint ${formatFingerprint(keys.fingerprint)}.`)
    if (!this.jsonEnabled()) process.stdout.write(keys.publicKey)
    return {fingerprint: keys.fingerprint, publicKey: keys.publicKey, profile: this.store.dir}
  }
}
