import {Command, Flags} from '@oclif/core'

import {loadServerConfig} from '../server/config.js'
import {untilShutdownSignal} from '../server/lifecycle.js'
import {startChatServer} from '../server/main.js'
import {ConfigError} from '../server/settings.js'
import {environmentWithLocalCluster} from '../superserver/local-cluster.js'

export default class Server extends Command {
  static override summary = 'Run a chat server.'
  static override description =
    'Serves the chat API, registers with the superserver and heartbeats. Without DATABASE_URL and ' +
    'FASTCHAT_CLUSTER_SECRET it joins the local cluster started by `fastchat up` on this machine. ' +
    'SIGTERM or Ctrl-C drains: new requests are refused, open ones answered, then it deregisters.'

  static override examples = [
    '<%= config.bin %> server --port 4001 --superserver http://127.0.0.1:4000',
    'DATABASE_URL=postgres://... FASTCHAT_CLUSTER_SECRET=... <%= config.bin %> server --port 0',
  ]

  static override flags = {
    port: Flags.integer({char: 'p', summary: 'Port to listen on (0: a free one). Env: PORT. Default: 4001.', min: 0, max: 65_535}),
    superserver: Flags.string({summary: 'Superserver URL to register with. Env: FASTCHAT_SUPERSERVER.'}),
    host: Flags.string({summary: 'Address to listen on (0.0.0.0 or :: for every interface). Env: FASTCHAT_HOST. Default: 127.0.0.1.'}),
    url: Flags.string({summary: 'Public URL of this server, if not http://127.0.0.1:PORT. Env: FASTCHAT_PUBLIC_URL.'}),
    json: Flags.boolean({summary: 'Print the start-up line as JSON.'}),
  }

  async run(): Promise<void> {
    const {flags} = await this.parse(Server)
    const env = await environmentWithLocalCluster()
    let config
    try {
      config = loadServerConfig({port: flags.port, host: flags.host, superserverUrl: flags.superserver, publicUrl: flags.url}, env)
    } catch (error) {
      const hint = error instanceof ConfigError && !env.DATABASE_URL ? '\nStart a local cluster with `fastchat up`, or set DATABASE_URL.' : ''
      this.error(`${(error as Error).message}${hint}`, {exit: 1})
    }
    const running = await startChatServer(config).catch((error: Error) =>
      this.error(`Could not start the chat server: ${error.message}`, {exit: 3}),
    )
    this.log(flags.json ? JSON.stringify({event: 'listening', url: running.url}) : `FastChat chat server listening on ${running.url}`)
    await untilShutdownSignal()
    await running.close()
  }
}
