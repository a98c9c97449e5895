import {Args} from '@oclif/core'

import {requireProfile} from '../../client/store.js'
import {BaseCommand} from '../_lib/base-command.js'

export interface PeerSettingResult {
  peer: boolean
}

export default class ConfigPeer extends BaseCommand<typeof ConfigPeer> {
  static override summary = 'Show, or turn on or off, the peer endpoint `listen` opens for direct messages.'
  static override description =
    'When on, `fastchat listen` opens a peer endpoint (as with --peer) and offers its addresses to your pinned contacts, end-to-end encrypted, ' +
    'so that their clients can also post their messages to you directly (docs/architecture.md, "Delivery paths"). ' +
    'Off (the default): no endpoint, and your contacts learn no address of yours; `--peer` and `--no-peer` override the setting for one run. ' +
    'Offers your contacts made are used for sending either way.'

  static override examples = ['<%= config.bin %> config peer', '<%= config.bin %> config peer on']

  static override args = {
    value: Args.string({description: 'on or off; without it, the current setting is shown.', options: ['on', 'off']}),
  }

  async run(): Promise<PeerSettingResult> {
    const profile = await requireProfile(this.store)
    const {value} = this.args
    if (value !== undefined) await this.store.saveProfile({...profile, peer: value === 'on'})
    const peer = value === undefined ? profile.peer === true : value === 'on'
    this.log(`The peer endpoint is ${peer ? 'on' : 'off'}.`)
    return {peer}
  }
}
