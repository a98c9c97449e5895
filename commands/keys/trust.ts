import {Args, Flags} from '@oclif/core'

import {formatFingerprint} from '../../crypto/index.js'
import {BaseCommand} from '../_lib/base-command.js'

export interface KeysTrustResult {
  username: string
  /** Lowercase hex; null if nothing was pinned before. */
  previous: string | null
  pinned: string
}

export default class KeysTrust extends BaseCommand<typeof KeysTrust> {
  static override summary = "Pin a contact's key by its fingerprint, replacing the one pinned before (after a key change)."
  static override description =
    'The answer to a key-change warning: once you know why the key changed (a new device, a reinstall), pin the new key by the ' +
    'fingerprint the warning showed. Nothing is pinned unless the server has exactly that key for the contact, so a key swapped in ' +
    'between the warning and this command is refused (exit 4). To mark a key as compared in person, use `fastchat keys verify --fingerprint`.'

  static override examples = ['<%= config.bin %> keys trust bob --fingerprint "1A2B 3C4D ..."']

  static override args = {
    user: Args.string({description: 'The contact.', required: true}),
  }

  static override flags = {
    fingerprint: Flags.string({summary: 'The fingerprint of the key to pin (spaces and case do not matter).', required: true}),
  }

  async run(): Promise<KeysTrustResult> {
    const client = await this.daemonOrClient()
    const {username, previous, pinned} = await client.trust(this.args.user, this.flags.fingerprint)
    this.log(`Pinned ${username}'s key ${formatFingerprint(pinned)}${previous && previous !== pinned ? ` (replacing ${formatFingerprint(previous)})` : ''}.`)
    return {username, previous, pinned}
  }
}
