import {Flags} from '@oclif/core'

import {checkDeviceName, defaultDeviceName} from '../../client/devices.js'
import {FastChatClient} from '../../client/fastchat-client.js'
import {BaseCommand} from '../_lib/base-command.js'
import {singleLine} from '../_lib/display.js'
import {readPassphrase} from '../_lib/prompts.js'

export interface DeviceLinkResult {
  username: string
  device: {id: string; name: string}
  server: string
  fingerprint: string
}

export default class DeviceLink extends BaseCommand<typeof DeviceLink> {
  static override summary = 'Make this (empty) profile a new device of an account you are logged in to elsewhere.'
  static override description =
    'Prints a code and waits (a few minutes at most) until you run `fastchat device approve CODE` on a device already logged in. ' +
    'That device sends your private key (still protected by your passphrase) and your pinned contacts, end to end encrypted to a ' +
    'one-time key made here; the server relays only ciphertext and never sees the second half of the code. Then the passphrase is ' +
    'asked (FASTCHAT_PASSPHRASE or a prompt) to check the key, and the profile is saved. This device reads messages from now on; ' +
    '`fastchat history` shows the past.'

  static override examples = ['<%= config.bin %> device link --profile ~/.fastchat-laptop', '<%= config.bin %> device link --name laptop --superserver http://chat.example:4000']

  static override flags = {
    name: Flags.string({summary: "This device's name in `fastchat device list`. Default: the machine's hostname."}),
    superserver: Flags.string({summary: 'Superserver URL. Env: FASTCHAT_SUPERSERVER. Default: http://127.0.0.1:4000.'}),
  }

  async run(): Promise<DeviceLinkResult> {
    const name = checkDeviceName(this.flags.name ?? defaultDeviceName())
    const pending = await FastChatClient.startLink({store: this.store, superserver: this.flags.superserver, name, passphrase: readPassphrase})
    // The code is the one thing a person needs: on stdout even with --json (then on stderr, the JSON coming at the end).
    const lines = [
      `Code: ${pending.code}`,
      `On a device where you are logged in, run: fastchat device approve ${pending.code}`,
      `Waiting for the approval (the code expires at ${singleLine(pending.expiresAt)})...`,
    ]
    if (this.jsonEnabled()) process.stderr.write(`${lines.join('\n')}\n`)
    else for (const line of lines) this.log(line)
    const linked = await pending.waitForApproval()
    this.log(`Linked as ${singleLine(linked.username)} (device ${singleLine(linked.device.name)}).`)
    return linked
  }
}
