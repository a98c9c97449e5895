import {once} from 'node:events'
import {createServer, type RequestListener, type Server} from 'node:http'
import type {AddressInfo} from 'node:net'
import type {Duplex} from 'node:stream'


import {AppError} from '../services/errors.js'
import {problemBody, problemTitle} from './problem.js'

export interface Listening {
  server: Server
  port: number
  /** http://host:port as a client on this machine would dial it. */
  url: string
  /** Starts answering requests with `app` (for a listener bound before its handler could be built). */
  serve(app: RequestListener): void
  /** Stops accepting, waits for open requests up to `graceMs`, then cuts the rest. */
  close(graceMs?: number): Promise<void>
}

/** While closing, how often connections that became idle are closed. */
const IDLE_SWEEP_MS = 50
/** Idle keep-alive sockets are closed after this; above the 60 s most proxies use, so they close first. */
const KEEP_ALIVE_TIMEOUT_MS = 65_000

/**
 * Requests Node's HTTP parser refuses before Express sees them (a request line
 * or headers over 16 KiB, malformed framing) still get a problem document
 * rather than Node's bare status line.
 */
function answerClientError(error: Error & {code?: string}, socket: Duplex): void {
  if (!socket.writable || error.code === 'ECONNRESET') {
    socket.destroy()
    return
  }
  const tooLarge = error.code === 'HPE_HEADER_OVERFLOW'
  const problem = tooLarge
    ? new AppError('FC_HEADERS_TOO_LARGE', 'The request line and headers must stay under 16 KiB.')
    : new AppError('FC_BAD_REQUEST', 'The request is not valid HTTP/1.1.')
  const body = JSON.stringify(problemBody(problem))
  socket.end(
    `HTTP/1.1 ${problem.status} ${problemTitle(problem)}\r\nContent-Type: application/problem+json\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  )
}

/**
 * Binds `host:port` and answers with `app`; without `app`, requests wait
 * until serve() is called (call it in the same turn of the event loop as
 * the handler is ready: requests that arrive with no handler are not answered).
 */
export async function listen(app: RequestListener | undefined, port: number, host: string): Promise<Listening> {
  const server = (app ? createServer(app) : createServer()).listen(port, host)
  server.keepAliveTimeout = KEEP_ALIVE_TIMEOUT_MS
  // Long-polls last up to a minute; the default 300 s request timeout is fine,
  // but headers must arrive promptly (slowloris).
  server.headersTimeout = 10_000
  server.on('clientError', answerClientError)
  await once(server, 'listening')
  const address = server.address() as AddressInfo
  const shownHost = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host
  let closing: Promise<void> | undefined
  return {
    server,
    port: address.port,
    url: `http://${shownHost}:${address.port}`,
    serve(handler) {
      server.on('request', handler)
    },
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
