import {Args, Flags} from '@oclif/core'

import {formatFingerprint, readPublicKey} from '../crypto/index.js'
import {ApiClient, ApiError} from '../client/api-client.js'
import {BaseCommand} from './_lib/base-command.js'
import {Exit} from './_lib/errors.js'
import {readPassword} from './_lib/prompts.js'
import {assign, superserverUrl, withFailover} from '../client/session.js'

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
  }

  async run(): Promise<LoginResult> {
    const existing = await this.store.profile()
    if (existing?.username && existing.username.toLowerCase() !== this.args.username.toLowerCase()) {
      this.error(`This profile (${this.store.dir}) belongs to ${existing.username}.`, {
        exit: Exit.input,
        suggestions: ['Use another --profile DIR (or FASTCHAT_HOME) for another account.'],
      })
    }
    const {publicKey} = await this.store.requireKeys()
    const local = await readPublicKey(publicKey)
    const superserver = superserverUrl(this.flags.superserver, existing)
    const password = await readPassword({stdin: this.flags['password-stdin']})

    let client = new ApiClient(await assign(superserver))
    const remember = (url: string) => void (client = client.withServer(url))
    const session = await withFailover({superserver, client}, (api) => api.login({username: this.args.username, password}), remember).catch(
      (error: unknown) => {
        if (error instanceof ApiError && error.status === 401) this.error('Wrong username or password.', {exit: Exit.input})
        throw error
      },
    )
    await this.store.saveProfile({
      username: session.username,
      superserver,
      server: client.baseUrl,
      token: session.token,
      expiresAt: session.expiresAt,
      fingerprint: local.fingerprint,
    })

    // Messages to us are encrypted to the key the server publishes: if it is not ours, we cannot read them.
    const published = await new ApiClient(client.baseUrl, session.token).user(session.username).catch(() => undefined)
    const keyMatches = published ? (await readPublicKey(published.publicKey).catch(() => undefined))?.fingerprint === local.fingerprint : null
    if (keyMatches === false) {
      this.note(
        `Warning: the server publishes another key for ${session.username} than the one in this profile (${formatFingerprint(local.fingerprint)}): ` +
          'you will not be able to read messages sent to you. Import the matching private key with `fastchat keys import`.',
      )
    }
    this.log(`Logged in as ${session.username} on ${client.baseUrl} (session valid until ${session.expiresAt}).`)
    return {username: session.username, server: client.baseUrl, expiresAt: session.expiresAt, keyMatches}
  }
}
