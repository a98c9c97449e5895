import {Args} from '@oclif/core'

import {formatFingerprint, readPublicKey} from '../../crypto/index.js'
import {BaseCommand} from '../_lib/base-command.js'
import {Exit} from '../_lib/errors.js'
import {contactOf} from '../../client/profile-store.js'

export interface KeysShowResult {
  username: string | null
  /** Lowercase hex, as the API has it; the text output groups it for reading aloud ("1A2B 3C4D ..."). */
  fingerprint: string
  /** For a contact: whether you compared the fingerprint with them (`keys verify --fingerprint`). */
  verified?: boolean
  pinnedAt?: string
}

export default class KeysShow extends BaseCommand<typeof KeysShow> {
  static override summary = "Show your key's fingerprint, or the one pinned for a contact."
  static override description = 'Reads the profile only. To compare with what the server has now, use `fastchat keys verify <user>`.'
  static override examples = ['<%= config.bin %> keys show', '<%= config.bin %> keys show bob']

  static override args = {
    user: Args.string({description: 'A contact; without it, your own key.'}),
  }

  async run(): Promise<KeysShowResult> {
    if (this.args.user) return this.contact(this.args.user)
    const {publicKey} = await this.store.requireKeys()
    const key = await readPublicKey(publicKey)
    const username = (await this.store.profile())?.username ?? null
    const result = {username, fingerprint: key.fingerprint}
    this.log(`${username ?? key.userIds.join(', ')}  ${formatFingerprint(key.fingerprint)}`)
    return result
  }

  private async contact(user: string): Promise<KeysShowResult> {
    const contact = contactOf(await this.store.contacts(), user)
    if (!contact) {
      this.error(`No key pinned for ${user} yet.`, {exit: Exit.input, suggestions: [`\`fastchat keys verify ${user}\` fetches ${user}'s key and pins it.`]})
    }
    const result = {username: user, fingerprint: contact.fingerprint, verified: contact.verified, pinnedAt: contact.pinnedAt}
    this.log(`${user}  ${formatFingerprint(contact.fingerprint)}  ${contact.verified ? '✔ verified' : 'not verified (trusted on first use)'}`)
    return result
  }
}
