import {Command, Flags} from '@oclif/core'

import {untilShutdownSignal} from '../server/lifecycle.js'
import {defaultDataDir} from '../storage/embedded.js'
import {ASSIGN_STRATEGIES} from '../superserver/config.js'
import {localClusterLogFile, startLocalCluster} from '../superserver/local-cluster.js'

export default class Up extends Command {
  static override summary = 'Run a local cluster: database, superserver and chat servers.'
  static override description =
    'Without DATABASE_URL an embedded PostgreSQL is started; its data lives in FASTCHAT_DATA_DIR ' +
    '(default: $XDG_DATA_HOME/fastchat or ~/.local/share/fastchat) and survives restarts. ' +
    "The processes' logs go to up.log there (and to the terminal with --verbose). " +
    'Ctrl-C drains the chat servers and stops everything.'

  static override examples = ['<%= config.bin %> up', '<%= config.bin %> up --servers 3 --port 5000', 'DATABASE_URL=postgres://postgres@127.0.0.1/fastchat <%= config.bin %> up']

  static override flags = {
    servers: Flags.integer({char: 'n', summary: 'Number of chat servers.', default: 2, min: 1, max: 32}),
    port: Flags.integer({char: 'p', summary: 'Superserver port; chat servers take the next ones. 0: free ports.', default: 4000, min: 0, max: 65_000}),
    strategy: Flags.string({summary: "The superserver's balancing strategy (see `fastchat superserver`). Env: FASTCHAT_STRATEGY. Default: round-robin.", options: [...ASSIGN_STRATEGIES]}),
    verbose: Flags.boolean({char: 'v', summary: 'Print the logs of every process (JSON lines) here too, not only in the log file.'}),
    json: Flags.boolean({summary: 'Print the cluster URLs as one JSON line.'}),
  }

  async run(): Promise<void> {
    const {flags} = await this.parse(Up)
    const started = Date.now()
    // Listening for Ctrl-C before anything starts: one pressed during start-up (or just as the
    // banner is printed) stops the cluster once it is up, instead of killing this process alone.
    const shutdown = untilShutdownSignal()
    const dataDir = defaultDataDir()
    const logFile = localClusterLogFile(dataDir)
    const cluster = await startLocalCluster({
      servers: flags.servers,
      port: flags.port,
      dataDir,
      databaseUrl: process.env.DATABASE_URL || undefined,
      entry: [...process.execArgv, process.argv[1]!],
      logLevel: process.env.LOG_LEVEL || 'info',
      log: (line) => process.stderr.write(`${line}\n`),
      logFile,
      verbose: flags.verbose,
      strategy: flags.strategy,
    }).catch((error: Error) => this.error(`Could not start the local cluster: ${error.message.replace(/\.$/, '')} (logs: ${logFile}).`, {exit: 3}))

    if (flags.json) {
      this.log(JSON.stringify({superserver: cluster.superserverUrl, servers: cluster.serverUrls, database: cluster.databaseShown, logs: logFile}))
    } else {
      this.log(`FastChat local cluster is up (${Date.now() - started} ms)`)
      this.log(`  database     ${cluster.databaseShown}`)
      const elsewhere = cluster.postgresElsewhere
      if (elsewhere) {
        const why = elsewhere.closed ? `: the postgres user cannot enter ${elsewhere.closed}` : ''
        this.log(`  postgres     ${elsewhere.path} (${dataDir}/postgres links there${why})`)
      }
      this.log(`  logs         ${logFile}`)
      this.log(`  superserver  listening on ${cluster.superserverUrl}`)
      for (const url of cluster.serverUrls) this.log(`  chat server  ${url}`)
      this.log(`Try: curl ${cluster.superserverUrl}/v1/assign    Stop: Ctrl-C`)
    }
    await shutdown
    this.log('Stopping...')
    await cluster.stop()
    this.log('Stopped.')
  }
}
