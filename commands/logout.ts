import {Flags} from '@oclif/core'

import {ApiError} from '../client/api-client.js'
import {BaseCommand} from './_lib/base-command.js'
import {Exit} from './_lib/errors.js'

export interface LogoutResult {
  username: string
  /** False if the profile was already logged out. */
  loggedOut: boolean
  /** --all: every session of the user ended, on every device. */
  everywhere: boolean
}

export default class Logout extends BaseCommand<typeof Logout> {
  static override summary = 'End the session: the token stops working on every server.'
  static override description = 'The keys and contacts stay in the profile; `fastchat login` starts a new session.'
  static override examples = ['<%= config.bin %> logout', '<%= config.bin %> logout --all']

  static override flags = {
    all: Flags.boolean({summary: 'End every session of your account, on every device and server (after a lost or shared device).'}),
  }

  async run(): Promise<LogoutResult> {
    const profile = await this.store.requireProfile()
    if (!profile.token) {
      // Ending the other sessions needs one that works.
      if (this.flags.all) {
        this.error(`${profile.username} is not logged in here.`, {
          exit: Exit.input,
          suggestions: [`Run \`fastchat login ${profile.username}\`, then \`fastchat logout --all\`.`],
        })
      }
      this.log(`${profile.username} is not logged in.`)
      return {username: profile.username, loggedOut: false, everywhere: false}
    }
    const everywhere = this.flags.all
    const session = await (everywhere ? this.openSession() : this.openSession().catch(() => undefined))
    if (session) {
      // A token the server no longer accepts (expired, revoked) is as good as logged out; not for --all, which needs it.
      await session.withFailover((api) => (everywhere ? api.logoutEverywhere() : api.logout())).catch((error: unknown) => {
        if (everywhere || !(error instanceof ApiError && error.status === 401)) throw error
      })
    }
    const {token: _token, expiresAt: _expiresAt, ...rest} = (await this.store.profile()) ?? profile
    await this.store.saveProfile(rest)
    this.log(everywhere ? `Logged out ${profile.username} everywhere: every session of the account has ended.` : `Logged out ${profile.username}.`)
    return {username: profile.username, loggedOut: true, everywhere}
  }
}
