import {Args, Flags} from '@oclif/core'

import {formatFingerprint} from '../crypto/index.js'
import {checkPassword, checkUsername, FastChatClient} from '../client/fastchat-client.js'
import {checkDeviceName, defaultDeviceName} from '../client/devices.js'
import {BaseCommand} from './_lib/base-command.js'
import {Exit} from './_lib/errors.js'
import {readPassphrase, readPassword} from './_lib/prompts.js'

export interface RegisterResult {
  username: string
  server: string
  superserver: string
  fingerprint: string
  profile: string
}

export default class Register extends BaseCommand<typeof Register> {
  static override summary = 'Create an account: a key pair on this machine, the user on the server.'
  static override description =
    'Asks the superserver for a chat server, generates an OpenPGP key pair (the private key stays in the profile, ' +
    'encrypted with your passphrase), registers the public key and logs in. ' +
    'The password comes from FASTCHAT_PASSWORD, --password-stdin or a prompt; the passphrase from FASTCHAT_PASSPHRASE or a prompt.'

  static override examples = [
    '<%= config.bin %> register alice',
    'FASTCHAT_PASSWORD=... FASTCHAT_PASSPHRASE=... <%= config.bin %> register bob --profile ./bob --superserver http://127.0.0.1:4000',
  ]

  static override args = {
    username: Args.string({description: 'The name to register: 3-32 letters, digits, _ . -', required: true}),
  }

  static override flags = {
    superserver: Flags.string({summary: 'Superserver URL. Env: FASTCHAT_SUPERSERVER. Default: http://127.0.0.1:4000.'}),
    'password-stdin': Flags.boolean({summary: 'Read the password from the first line of stdin.'}),
    device: Flags.string({summary: "This device's name in `fastchat device list`. Default: the machine's hostname."}),
  }

  async run(): Promise<RegisterResult> {
    const {username} = this.args
    // Everything that can be wrong locally is said before anything is asked, generated or sent.
    checkUsername(username)
    const device = checkDeviceName(this.flags.device ?? defaultDeviceName())
    const existing = await this.store.profile()
    if (existing?.username) {
      this.error(`This profile (${this.store.dir}) already belongs to ${existing.username}.`, {
        exit: Exit.input,
        code: 'FC_PROFILE_IN_USE',
        suggestions: ['Use another --profile DIR (or FASTCHAT_HOME) for another account.'],
      })
    }
    const password = await readPassword({stdin: this.flags['password-stdin'], confirm: true, check: checkPassword})
    const client = await FastChatClient.register({
      store: this.store,
      username,
      password,
      superserver: this.flags.superserver,
      device,
      passphrase: readPassphrase,
      newPassphrase: () => readPassphrase({confirm: true}),
    })
    const {server, superserver, fingerprint} = client.profile
    this.log(`Registered ${client.username} on ${server} and logged in.`)
    this.log(`Your key fingerprint: ${formatFingerprint(fingerprint)}`)
    this.log(`Profile: ${this.store.dir}`)
    return {username: client.username, server, superserver, fingerprint, profile: this.store.dir}
  }
}
