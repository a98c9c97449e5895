import {Args} from '@oclif/core'

import {BaseCommand} from './_lib/base-command.js'
import {singleLine} from './_lib/display.js'

export interface UnblockResult {
  username: string
}

export default class Unblock extends BaseCommand<typeof Unblock> {
  static override summary = 'Let a blocked user reach you again.'
  static override description =
    'What they sent while blocked is not delivered afterwards: their 1:1 messages were refused, and their group messages ' +
    'were never put in your stream (they do show again in the group\'s history).'
  static override examples = ['<%= config.bin %> unblock mallory']

  static override args = {
    username: Args.string({description: 'The user to unblock.', required: true}),
  }

  async run(): Promise<UnblockResult> {
    const session = await this.openSession()
    await session.withFailover((api) => api.unblock(this.args.username))
    this.log(`Unblocked ${singleLine(this.args.username)}.`)
    return {username: this.args.username}
  }
}
