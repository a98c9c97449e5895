import {Command, Flags} from '@oclif/core'

import {untilShutdownSignal} from '../server/lifecycle.js'
import {ConfigError} from '../server/settings.js'
import {ASSIGN_STRATEGIES, loadSuperserverConfig} from '../superserver/config.js'
import {environmentWithLocalCluster} from '../superserver/local-cluster.js'
import {startSuperserver} from '../superserver/main.js'

export default class Superserver extends Command {
  static override summary = 'Run the superserver: the chat-server registry and balancer.'
  static override description =
    'Chat servers register and heartbeat here; clients ask GET /v1/assign for a server (round-robin over ' +
    'healthy ones, or with --strategy least-loaded the one with the fewest open polls and streams). ' +
    'The registry lives in PostgreSQL, so several superservers can share one database.'

  static override examples = [
    'DATABASE_URL=postgres://... FASTCHAT_CLUSTER_SECRET=... <%= config.bin %> superserver --port 4000',
    '<%= config.bin %> superserver --port 4000 --strategy least-loaded',
  ]

  static override flags = {
    port: Flags.integer({char: 'p', summary: 'Port to listen on (0: a free one). Env: PORT. Default: 4000.', min: 0, max: 65_535}),
    host: Flags.string({summary: 'Address to listen on (0.0.0.0 or :: for every interface). Env: FASTCHAT_HOST. Default: 127.0.0.1.'}),
    url: Flags.string({summary: 'Public URL of this superserver. Env: FASTCHAT_PUBLIC_URL.'}),
    strategy: Flags.string({
      summary: 'How clients are assigned a chat server. Env: FASTCHAT_STRATEGY. Default: round-robin.',
      options: [...ASSIGN_STRATEGIES],
    }),
    json: Flags.boolean({summary: 'Print the start-up line as JSON.'}),
  }

  async run(): Promise<void> {
    const {flags} = await this.parse(Superserver)
    const {FASTCHAT_SUPERSERVER: _notOurs, ...env} = await environmentWithLocalCluster()
    let config
    try {
      config = loadSuperserverConfig({port: flags.port, host: flags.host, publicUrl: flags.url, strategy: flags.strategy}, env)
    } catch (error) {
      const hint = error instanceof ConfigError && !env.DATABASE_URL ? '\nStart a local cluster with `fastchat up`, or set DATABASE_URL.' : ''
      this.error(`${(error as Error).message}${hint}`, {exit: 1})
    }
    const running = await startSuperserver(config).catch((error: Error) =>
      this.error(`Could not start the superserver: ${error.message}`, {exit: 3}),
    )
    this.log(flags.json ? JSON.stringify({event: 'listening', url: running.url}) : `FastChat superserver listening on ${running.url}`)
    await untilShutdownSignal()
    await running.close()
  }
}
