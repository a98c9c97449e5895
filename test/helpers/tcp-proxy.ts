import {once} from 'node:events'
import {createConnection, createServer, type Socket} from 'node:net'

/** A TCP forwarder on 127.0.0.1 that a test can cut (a network partition) and heal. */
export interface TcpProxy {
  port: number
  /** Rewrites a postgres:// URL to go through the proxy. */
  url(databaseUrl: string): string
  /** Resets every open connection, and every new one until heal(). */
  cut(): void
  heal(): void
  close(): Promise<void>
}

export async function startTcpProxy(target: {host: string; port: number}): Promise<TcpProxy> {
  const open = new Set<Socket>()
  let cut = false
  const server = createServer((client) => {
    if (cut) return void client.resetAndDestroy()
    const upstream = createConnection(target)
    for (const socket of [client, upstream]) {
      open.add(socket)
      socket.once('close', () => open.delete(socket))
      socket.on('error', () => undefined)
    }
    client.pipe(upstream).pipe(client)
    client.once('close', () => upstream.destroy())
    upstream.once('close', () => client.destroy())
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const port = (server.address() as {port: number}).port
  return {
    port,
    url(databaseUrl) {
      const parsed = new URL(databaseUrl)
      parsed.hostname = '127.0.0.1'
      parsed.port = String(port)
      return parsed.toString()
    },
    cut() {
      cut = true
      for (const socket of open) socket.resetAndDestroy()
    },
    heal() {
      cut = false
    },
    async close() {
      for (const socket of open) socket.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}
