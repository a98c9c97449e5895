import type {Device} from '../../client/api-client.js'
import {BaseCommand} from '../_lib/base-command.js'
import {singleLine} from '../_lib/display.js'

export interface DeviceListResult {
  devices: Device[]
}

export default class DeviceList extends BaseCommand<typeof DeviceList> {
  static override summary = 'List your devices (your logged-in sessions), with their last activity.'
  static override description = 'Last activity is recorded at most once an hour. `*` marks this device.'
  static override examples = ['<%= config.bin %> device list', '<%= config.bin %> device list --json']

  async run(): Promise<DeviceListResult> {
    const client = await this.openClient()
    const devices = await client.devices()
    const width = Math.max(0, ...devices.map((d) => singleLine(d.name).length))
    for (const device of devices) {
      this.log(`${device.current ? '*' : ' '} ${singleLine(device.name).padEnd(width)}  last active ${singleLine(device.lastActiveAt)}  since ${singleLine(device.createdAt)}  ${device.id}`)
    }
    return {devices}
  }
}
