import {Args} from '@oclif/core'

import {BaseCommand} from '../_lib/base-command.js'
import {singleLine} from '../_lib/display.js'

export interface DeviceApproveResult {
  approved: string
}

export default class DeviceApprove extends BaseCommand<typeof DeviceApprove> {
  static override summary = 'Approve a new device: send it your key and pinned contacts, end to end encrypted.'
  static override description =
    'CODE is what `fastchat device link` printed on the new device. The code is checked against the new device\'s request first: ' +
    'a mistyped code, or a request whose key the server swapped, is refused and nothing is sent. Asks your passphrase to sign.'

  static override examples = ['<%= config.bin %> device approve K7M2QX-9PXA4H']

  static override args = {
    code: Args.string({description: 'The code the new device printed (e.g. K7M2QX-9PXA4H).', required: true}),
  }

  async run(): Promise<DeviceApproveResult> {
    const client = await this.openClient()
    const {name} = await client.approveDevice(this.args.code)
    this.log(`Approved ${singleLine(name)}.`)
    return {approved: name}
  }
}
