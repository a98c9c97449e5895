import {Args} from '@oclif/core'

import {BaseCommand} from './_lib/base-command.js'
import {singleLine} from './_lib/display.js'

export interface BlockResult {
  username: string
  /** When the block began (earlier than now if the user was already blocked). */
  blockedAt: string
}

export default class Block extends BaseCommand<typeof Block> {
  static override summary = "Stop a user's messages, files and group invitations reaching you."
  static override description =
    'Kept by the server, so it holds on every server and every device of yours. Their 1:1 messages are refused ' +
    '(they are told "does not accept messages from you"), they cannot add you to a group, and their messages in ' +
    'groups you share are not delivered to you nor shown in your group history. `fastchat unblock` undoes it.'

  static override examples = ['<%= config.bin %> block mallory', '<%= config.bin %> blocks']

  static override args = {
    username: Args.string({description: 'The user to block.', required: true}),
  }

  async run(): Promise<BlockResult> {
    const session = await this.openSession()
    const block = await session.withFailover((api) => api.block(this.args.username))
    this.log(`Blocked ${singleLine(block.username)} (since ${block.blockedAt}). \`fastchat unblock ${singleLine(block.username)}\` undoes it.`)
    return block
  }
}
