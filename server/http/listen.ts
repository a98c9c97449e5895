import {once} from 'node:events'
import type {Server} from 'node:http'
import type {AddressInfo} from 'node:net'

import type {Express} from 'express'

export interface Listening {
  server: Server
  port: number
  /** http://host:port as a client on this machine would dial it. */
  url: string
  /** Stops accepting, waits for open requests up to `graceMs`, then cuts the rest. */
  close(graceMs?: number): Promise<void>
}

/** While closing, how often connections that became idle are closed. */
const IDLE_SWEEP_MS = 50
/** Idle keep-alive sockets are closed after this; above the 60 s most proxies use, so they close first. */
const KEEP_ALIVE_TIMEOUT_MS = 65_000

export async function listen(app: Express, port: number, host: string): Promise<Listening> {
  const server = app.listen(port, host)
  server.keepAliveTimeout = KEEP_ALIVE_TIMEOUT_MS
  // Long-polls last up to a minute; the default 300 s request timeout is fine,
  // but headers must arrive promptly (slowloris).
  server.headersTimeout = 10_000
  await once(server, 'listening')
  const address = server.address() as AddressInfo
  const shownHost = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host
  let closing: Promise<void> | undefined
  return {
    server,
    port: address.port,
    url: `http://${shownHost}:${address.port}`,
    close(graceMs = 5_000) {
      closing ??= new Promise<void>((resolve) => {
        const timer = setTimeout(() => server.closeAllConnections(), graceMs)
        timer.unref()
        // A keep-alive connection whose request finishes after close() began
        // turns idle later; sweep those as they appear instead of at the deadline.
        const sweeper = setInterval(() => server.closeIdleConnections(), IDLE_SWEEP_MS)
        server.close(() => {
          clearTimeout(timer)
          clearInterval(sweeper)
          resolve()
        })
        server.closeIdleConnections()
      })
      return closing
    },
  }
}
