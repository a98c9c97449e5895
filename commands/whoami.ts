import {formatFingerprint} from '../crypto/index.js'
import {BaseCommand} from './_lib/base-command.js'
import {singleLine} from './_lib/display.js'

export interface WhoamiResult {
  username: string
  server: string
  superserver: string
  /** Lowercase hex, as the API has it; the text output groups it for reading aloud ("1A2B 3C4D ..."). */
  fingerprint: string
  loggedIn: boolean
  expiresAt: string | null
  profile: string
}

export default class Whoami extends BaseCommand<typeof Whoami> {
  static override summary = 'Show the account of this profile: username, server and key fingerprint.'
  static override description = 'Reads the profile only; it does not contact the server.'
  static override examples = ['<%= config.bin %> whoami', '<%= config.bin %> whoami --profile ./bob --json']

  async run(): Promise<WhoamiResult> {
    const profile = await this.store.requireProfile()
    const expired = profile.expiresAt !== undefined && Date.parse(profile.expiresAt) <= Date.now()
    const result: WhoamiResult = {
      username: profile.username,
      server: profile.server,
      superserver: profile.superserver,
      fingerprint: profile.fingerprint,
      loggedIn: Boolean(profile.token) && !expired,
      expiresAt: profile.expiresAt ?? null,
      profile: this.store.dir,
    }
    // The profile holds what servers answered at login: printed as data, like any answer.
    this.log(`${singleLine(result.username)}${result.loggedIn ? '' : ' (logged out)'}`)
    this.log(`  server       ${singleLine(result.server)}`)
    this.log(`  superserver  ${singleLine(result.superserver)}`)
    this.log(`  fingerprint  ${formatFingerprint(result.fingerprint)}`)
    this.log(`  profile      ${singleLine(result.profile)}`)
    return result
  }
}
