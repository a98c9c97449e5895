import {Args} from '@oclif/core'

import type {MyPresence} from '../protocol/presence.js'
import {BaseCommand} from './_lib/base-command.js'

export default class Presence extends BaseCommand<typeof Presence> {
  static override summary = 'Show or hide your presence (online, last seen) from everyone.'
  static override description =
    'off: nobody sees whether you are online or when you were last seen (`fastchat who` shows you as "hidden"), and no ' +
    'presence events about you are sent from now on; contacts are not told that you went offline. on: shown again to the ' +
    'people you talk with, from your next poll on; nothing of the time it was off is revealed. show: your setting.'

  static override examples = ['<%= config.bin %> presence off', '<%= config.bin %> presence on', '<%= config.bin %> presence show --json']

  static override args = {
    setting: Args.string({description: 'off, on, or show (the default).', options: ['off', 'on', 'show'], default: 'show'}),
  }

  async run(): Promise<MyPresence> {
    const client = await this.openClient()
    const {setting} = this.args
    const presence = setting === 'show' ? await client.myPresence() : await client.setPresence(setting === 'on')
    this.log(
      presence.visible
        ? `Your presence is shown to the people you talk with (now: ${presence.presence}). \`fastchat presence off\` hides it.`
        : 'Your presence is hidden from everyone. `fastchat presence on` shows it again.',
    )
    return presence
  }
}
