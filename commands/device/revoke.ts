import {Args} from '@oclif/core'

import {BaseCommand} from '../_lib/base-command.js'
import {singleLine} from '../_lib/display.js'

export interface DeviceRevokeResult {
  revoked: {id: string; name: string}
  /** True when it was this device: it is logged out now. */
  current: boolean
}

export default class DeviceRevoke extends BaseCommand<typeof DeviceRevoke> {
  static override summary = "End one of your devices' session, on every server."
  static override description =
    'NAME is the exact name `fastchat device list` shows (or the device id). The device gets 401 at its next request; ' +
    'its profile keeps the key. Revoking this device is a logout.'

  static override examples = ['<%= config.bin %> device revoke laptop', '<%= config.bin %> device revoke "laptop (2)"']

  static override args = {
    name: Args.string({description: "The device's name (or id), as `fastchat device list` shows it.", required: true}),
  }

  async run(): Promise<DeviceRevokeResult> {
    const client = await this.openClient()
    const device = await client.revokeDevice(this.args.name)
    this.log(device.current ? `Revoked ${singleLine(device.name)} (this device): logged out.` : `Revoked ${singleLine(device.name)}.`)
    return {revoked: {id: device.id, name: device.name}, current: device.current}
  }
}
