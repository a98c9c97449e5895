import {ApiError} from './_lib/api-client.js'
import {BaseCommand} from './_lib/base-command.js'

export interface LogoutResult {
  username: string
  /** False if the profile was already logged out. */
  loggedOut: boolean
}

export default class Logout extends BaseCommand<typeof Logout> {
  static override summary = 'End the session: the token stops working on every server.'
  static override description = 'The keys and contacts stay in the profile; `fastchat login` starts a new session.'
  static override examples = ['<%= config.bin %> logout']

  async run(): Promise<LogoutResult> {
    const profile = await this.store.requireProfile()
    if (!profile.token) {
      this.log(`${profile.username} is not logged in.`)
      return {username: profile.username, loggedOut: false}
    }
    const session = await this.openSession().catch(() => undefined)
    if (session) {
      // A token the server no longer accepts (expired, revoked) is as good as logged out.
      await session.withFailover((api) => api.logout()).catch((error: unknown) => {
        if (!(error instanceof ApiError && error.status === 401)) throw error
      })
    }
    const {token: _token, expiresAt: _expiresAt, ...rest} = (await this.store.profile()) ?? profile
    await this.store.saveProfile(rest)
    this.log(`Logged out ${profile.username}.`)
    return {username: profile.username, loggedOut: true}
  }
}
