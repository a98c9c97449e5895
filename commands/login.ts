import {Args, Flags} from '@oclif/core'

import {formatFingerprint} from '../crypto/index.js'
import {FastChatClient} from '../client/fastchat-client.js'
import {requireKeys} from '../client/store.js'
import {checkDeviceName, defaultDeviceName} from '../client/devices.js'
import {BaseCommand} from './_lib/base-command.js'
import {Exit} from './_lib/errors.js'
import {readPassphrase, readPassword} from './_lib/prompts.js'

export interface LoginResult {
  username: string
  server: string
  expiresAt: string
  /** False when the server publishes another key for this user than the one in the profile; null if it could not be checked. */
  keyMatches: boolean | null
}

export default class Login extends BaseCommand<typeof Login> {
  static override summary = 'Log in with an account whose private key is in this profile.'
  static override description =
    'The password comes from FASTCHAT_PASSWORD, --password-stdin or a prompt. The profile must already hold the private key ' +
    '(from `register` or `keys generate`): FastChat never stores it on a server.'

  static override examples = ['<%= config.bin %> login alice', 'printf "%s\\n" "$PASSWORD" | <%= config.bin %> login alice --password-stdin']

  static override args = {
    username: Args.string({description: 'Your username.', required: true}),
  }

  static override flags = {
    superserver: Flags.string({summary: 'Superserver URL. Env: FASTCHAT_SUPERSERVER. Default: the profile\'s, else http://127.0.0.1:4000.'}),
    'password-stdin': Flags.boolean({summary: 'Read the password from the first line of stdin.'}),
    device: Flags.string({summary: "This device's name in `fastchat device list`. Default: the machine's hostname."}),
  }

  async run(): Promise<LoginResult> {
    const existing = await this.store.profile()
    if (existing?.username && existing.username.toLowerCase() !== this.args.username.toLowerCase()) {
      this.error(`This profile (${this.store.dir}) belongs to ${existing.username}.`, {
        exit: Exit.input,
        code: 'FC_PROFILE_IN_USE',
        suggestions: ['Use another --profile DIR (or FASTCHAT_HOME) for another account.'],
      })
    }
    const device = checkDeviceName(this.flags.device ?? defaultDeviceName())
    // Before the password: without a key pair there is nothing to log in with.
    await requireKeys(this.store)
    const password = await readPassword({stdin: this.flags['password-stdin']})
    const {client, keyMatches} = await FastChatClient.login({store: this.store, username: this.args.username, password, superserver: this.flags.superserver, device, passphrase: readPassphrase})
    const {username, server, expiresAt, fingerprint} = client.profile
    if (keyMatches === false) {
      this.note(
        `Warning: the server publishes another key for ${username} than the one in this profile (${formatFingerprint(fingerprint)}): ` +
          'you will not be able to read messages sent to you. Import the matching private key with `fastchat keys import`.',
      )
    }
    this.log(`Logged in as ${username} on ${server} (session valid until ${expiresAt}).`)
    return {username, server, expiresAt: expiresAt ?? '', keyMatches}
  }
}
