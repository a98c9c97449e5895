import {Args} from '@oclif/core'

import {requireProfile} from '../../client/store.js'
import {BaseCommand} from '../_lib/base-command.js'

export interface ReadReceiptsResult {
  readReceipts: boolean
}

export default class ConfigReadReceipts extends BaseCommand<typeof ConfigReadReceipts> {
  static override summary = 'Show, or turn on or off, the read receipts this profile sends.'
  static override description =
    'When on (the default), `inbox`, `listen` and `history` send each sender an end-to-end encrypted read receipt for the messages they show ' +
    '(a daemon of this profile: for the messages a program takes from it). Off: none are sent; `--read-receipts` and `--no-read-receipts` ' +
    'override the setting for one run. Delivered receipts are the server\'s: your client fetching a message is what it sees anyway.'

  static override examples = ['<%= config.bin %> config read-receipts', '<%= config.bin %> config read-receipts off']

  static override args = {
    value: Args.string({description: 'on or off; without it, the current setting is shown.', options: ['on', 'off']}),
  }

  async run(): Promise<ReadReceiptsResult> {
    const profile = await requireProfile(this.store)
    const {value} = this.args
    if (value !== undefined) await this.store.saveProfile({...profile, readReceipts: value === 'on'})
    const readReceipts = value === undefined ? profile.readReceipts !== false : value === 'on'
    this.log(`Read receipts are ${readReceipts ? 'on' : 'off'}.`)
    return {readReceipts}
  }
}
