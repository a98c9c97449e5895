import {BaseCommand} from './_lib/base-command.js'
import {singleLine} from './_lib/display.js'

export interface BlocksResult {
  blocks: {username: string; blockedAt: string}[]
}

export default class Blocks extends BaseCommand<typeof Blocks> {
  static override summary = 'List the users you block.'
  static override examples = ['<%= config.bin %> blocks', '<%= config.bin %> blocks --json']

  async run(): Promise<BlocksResult> {
    const session = await this.openSession()
    const {blocks} = await session.withFailover((api) => api.blocks())
    if (blocks.length === 0) this.log('You block no one.')
    for (const block of blocks) this.log(`${singleLine(block.username)}  since ${block.blockedAt}`)
    return {blocks}
  }
}
