import {Args, Flags} from '@oclif/core'

import {formatFingerprint, generateKeyPair, readPublicKey, unlockPrivateKey} from '../crypto/index.js'
import {ApiClient} from '../client/api-client.js'
import {BaseCommand} from './_lib/base-command.js'
import {Exit} from './_lib/errors.js'
import {readPassphrase, readPassword} from './_lib/prompts.js'
import {assign, superserverUrl, withFailover} from '../client/session.js'

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
  }

  async run(): Promise<RegisterResult> {
    const existing = await this.store.profile()
    if (existing?.username) {
      this.error(`This profile (${this.store.dir}) already belongs to ${existing.username}.`, {
        exit: Exit.input,
        suggestions: ['Use another --profile DIR (or FASTCHAT_HOME) for another account.'],
      })
    }
    const superserver = superserverUrl(this.flags.superserver)
    const password = await readPassword({stdin: this.flags['password-stdin']})
    // Ask for a server first: no point making a key (and asking for a passphrase) if no server is up.
    let client = new ApiClient(await assign(superserver))
    const keys = await this.keyPair(this.args.username)
    const remember = (url: string) => void (client = client.withServer(url))
    const registered = await withFailover({superserver, client}, (api) => api.register({username: this.args.username, password, publicKey: keys.publicKey}), remember).catch(
      async (error: {code?: string}) => {
        if (error.code !== 'FC_USERNAME_TAKEN') throw error
        // A retry after a lost answer finds the name taken by its own first try: ours if it holds our key.
        if (await holdsKey(client, this.args.username, password, keys.fingerprint)) return {username: this.args.username}
        this.error(`The username ${this.args.username} is taken.`, {exit: Exit.input, suggestions: ['Choose another one.']})
      },
    )
    // The account exists from here on: keep the key first, so a failed login can simply be retried with `login`.
    await this.store.saveKeys(keys)
    const session = await withFailover({superserver, client}, (api) => api.login({username: registered.username, password}), remember)
    await this.store.saveProfile({
      username: session.username,
      superserver,
      server: client.baseUrl,
      token: session.token,
      expiresAt: session.expiresAt,
      fingerprint: keys.fingerprint,
    })
    this.log(`Registered ${session.username} on ${client.baseUrl} and logged in.`)
    this.log(`Your key fingerprint: ${formatFingerprint(keys.fingerprint)}`)
    this.log(`Profile: ${this.store.dir}`)
    return {username: session.username, server: client.baseUrl, superserver, fingerprint: keys.fingerprint, profile: this.store.dir}
  }

  /** A key pair from `keys generate` already in the profile is used as is; otherwise a new one. */
  private async keyPair(username: string): Promise<{publicKey: string; privateKey: string; fingerprint: string}> {
    const [privateKey, publicKey] = await Promise.all([this.store.privateKey(), this.store.publicKey()])
    if (privateKey && publicKey) {
      const unlocked = await unlockPrivateKey(privateKey, await readPassphrase())
      return {privateKey, publicKey: unlocked.publicKey, fingerprint: unlocked.fingerprint}
    }
    return generateKeyPair({username, passphrase: await readPassphrase({confirm: true})})
  }
}

/** Whether `username` logs in with `password` and publishes the key with `fingerprint`. */
async function holdsKey(client: ApiClient, username: string, password: string, fingerprint: string): Promise<boolean> {
  try {
    const session = await client.login({username, password})
    const published = await new ApiClient(client.baseUrl, session.token).user(username)
    return (await readPublicKey(published.publicKey)).fingerprint === fingerprint
  } catch {
    return false
  }
}
