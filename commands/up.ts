import {Command, Flags} from '@oclif/core'

import {untilShutdownSignal} from '../server/lifecycle.js'
import {startLocalCluster} from '../superserver/local-cluster.js'

export default class Up extends Command {
  static override summary = 'Run a local cluster: database, superserver and chat servers.'
  static override description =
    'Without DATABASE_URL an embedded PostgreSQL is started; its data lives in FASTCHAT_DATA_DIR ' +
    '(default: ~/.local/share/fastchat, or /var/lib/fastchat as root) and survives restarts. ' +
    'Ctrl-C drains the chat servers and stops everything.'

  static override examples = ['<%= config.bin %> up', '<%= config.bin %> up --servers 3 --port 5000', 'DATABASE_URL=postgres://postgres@127.0.0.1/fastchat <%= config.bin %> up']

  static override flags = {
    servers: Flags.integer({char: 'n', summary: 'Number of chat servers.', default: 2, min: 1, max: 32}),
    port: Flags.integer({char: 'p', summary: 'Superserver port; chat servers take the next ones. 0: free ports.', default: 4000, min: 0, max: 65_000}),
    verbose: Flags.boolean({char: 'v', summary: 'Show the info-level logs of every process.'}),
    json: Flags.boolean({summary: 'Print the cluster URLs as one JSON line.'}),
  }

  async run(): Promise<void> {
    const {flags} = await this.parse(Up)
    const started = Date.now()
    const cluster = await startLocalCluster({
      servers: flags.servers,
      port: flags.port,
      databaseUrl: process.env.DATABASE_URL || undefined,
      entry: [...process.execArgv, process.argv[1]!],
      logLevel: process.env.LOG_LEVEL ?? (flags.verbose ? 'info' : 'warn'),
      log: (line) => process.stderr.write(`${line}\n`),
    }).catch((error: Error) => this.error(`Could not start the local cluster: ${error.message}`, {exit: 3}))

    if (flags.json) {
      this.log(JSON.stringify({superserver: cluster.superserverUrl, servers: cluster.serverUrls, database: cluster.databaseShown}))
    } else {
      this.log(`FastChat local cluster is up (${Date.now() - started} ms)`)
      this.log(`  database     ${cluster.databaseShown}`)
      this.log(`  superserver  listening on ${cluster.superserverUrl}`)
      for (const url of cluster.serverUrls) this.log(`  chat server  ${url}`)
      this.log(`Try: curl ${cluster.superserverUrl}/v1/assign    Stop: Ctrl-C`)
    }
    await untilShutdownSignal()
    this.log('Stopping...')
    await cluster.stop()
    this.log('Stopped.')
  }
}
