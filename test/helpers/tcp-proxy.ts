import {once} from 'node:events'
import {createConnection, createServer, type Socket} from 'node:net'

/** A TCP forwarder on 127.0.0.1 that a test can cut (a network partition) or freeze (a silent one), and heal. */
export interface TcpProxy {
  port: number
  /** Rewrites a postgres:// URL to go through the proxy. */
  url(databaseUrl: string): string
  /** Resets every open connection, and every new one until heal(). */
  cut(): void
  /**
   * Stops forwarding bytes, both ways, on every connection and every new one,
   * without closing anything: a link gone silent (a dead switch, a machine
   * frozen), which neither end can tell from a slow one. Held bytes go on at heal().
   */
  freeze(): void
  /** Ends a cut or a freeze. */
  heal(): void
  close(): Promise<void>
}

interface Link {
  client: Socket
  upstream: Socket
}

export async function startTcpProxy(target: {host: string; port: number}): Promise<TcpProxy> {
  const open = new Set<Socket>()
  const links = new Set<Link>()
  let cut = false
  let frozen = false
  const flow = ({client, upstream}: Link) => {
    client.pipe(upstream)
    upstream.pipe(client)
  }
  const stop = ({client, upstream}: Link) => {
    client.unpipe(upstream)
    upstream.unpipe(client)
    client.pause()
    upstream.pause()
  }
  const server = createServer((client) => {
    if (cut) return void client.resetAndDestroy()
    const upstream = createConnection(target)
    const link = {client, upstream}
    for (const socket of [client, upstream]) {
      open.add(socket)
      socket.once('close', () => open.delete(socket))
      socket.on('error', () => undefined)
    }
    links.add(link)
    client.once('close', () => links.delete(link))
    if (frozen) stop(link)
    else flow(link)
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
    freeze() {
      if (frozen) return
      frozen = true
      for (const link of links) stop(link)
    },
    heal() {
      cut = false
      if (!frozen) return
      frozen = false
      for (const link of links) flow(link)
    },
    async close() {
      for (const socket of open) socket.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}
