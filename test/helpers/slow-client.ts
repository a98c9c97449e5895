import {once} from 'node:events'
import {request as httpRequest} from 'node:http'
import {connect, type Socket} from 'node:net'
import {Readable} from 'node:stream'

/**
 * HTTP/1.1 clients that misbehave on purpose, on raw sockets: a download that
 * reads the status line and then stops reading, an upload that trickles its
 * body. fetch and undici would read ahead or time out on their own.
 */

export interface RawAnswer {
  status: number
  headers: Record<string, string>
  /** The body, for answers that are not held (a problem document). */
  body?: any
}

function dial(url: string): Promise<Socket> {
  const {hostname, port} = new URL(url)
  const socket = connect({host: hostname, port: Number(port)})
  socket.on('error', () => undefined) // a cut connection is what these tests provoke
  return once(socket, 'connect').then(() => socket)
}

/** Reads the status line and headers; `onHead` decides whether to read the body too. */
function readHead(socket: Socket): Promise<{answer: RawAnswer; rest: Buffer}> {
  return new Promise((resolve, reject) => {
    let seen = Buffer.alloc(0)
    const onData = (piece: Buffer) => {
      seen = Buffer.concat([seen, piece])
      const end = seen.indexOf('\r\n\r\n')
      if (end < 0) return
      socket.off('data', onData)
      socket.off('close', onClose)
      socket.pause()
      const [statusLine, ...lines] = seen.subarray(0, end).toString('latin1').split('\r\n')
      const headers: Record<string, string> = {}
      for (const line of lines) {
        const colon = line.indexOf(':')
        headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim()
      }
      resolve({answer: {status: Number(statusLine!.split(' ')[1]), headers}, rest: seen.subarray(end + 4)})
    }
    const onClose = () => reject(new Error(`connection closed before an answer (${seen.length} bytes seen)`))
    socket.on('data', onData)
    socket.once('close', onClose)
  })
}

/** Reads a small, complete body (a problem document) after the head. */
async function readBody(socket: Socket, answer: RawAnswer, rest: Buffer): Promise<RawAnswer> {
  const length = Number(answer.headers['content-length'] ?? 0)
  const body = await new Promise<Buffer>((resolve, reject) => {
    let seen = rest
    const check = () => {
      if (seen.length < length) return
      socket.off('data', onData)
      socket.off('close', onClose)
      resolve(seen)
    }
    const onData = (piece: Buffer) => {
      seen = Buffer.concat([seen, piece])
      check()
    }
    const onClose = () => reject(new Error(`connection closed after ${seen.length} of ${length} body bytes`))
    socket.on('data', onData)
    socket.once('close', onClose)
    socket.resume()
    check()
  })
  const text = body.subarray(0, length).toString()
  return {...answer, body: /json/.test(answer.headers['content-type'] ?? '') && text ? JSON.parse(text) : text}
}

export interface StalledDownload {
  /** Status 0 when the connection was cut before any answer. */
  answer: RawAnswer
  socket: Socket
  /** Resumes reading and resolves with how many body bytes arrived before the connection ended. */
  drain(): Promise<number>
}

/**
 * GET `path` and, once the head of a 200 is in, stop reading: the server's
 * writes back up through the socket buffers and stall. Other answers are read whole.
 */
export async function stalledDownload(server: string, path: string, token: string): Promise<StalledDownload> {
  const socket = await dial(server)
  socket.write(`GET ${path} HTTP/1.1\r\nHost: fastchat\r\nAuthorization: Bearer ${token}\r\n\r\n`)
  const head = await readHead(socket).catch(() => undefined)
  // Cut before any answer: reported as status 0.
  if (!head) return {answer: {status: 0, headers: {}}, socket, drain: async () => 0}
  const {answer, rest} = head
  if (answer.status !== 200) {
    const full = await readBody(socket, answer, rest)
    socket.destroy()
    return {answer: full, socket, drain: async () => 0}
  }
  return {
    answer,
    socket,
    drain: () =>
      new Promise((resolve) => {
        // A download that was not cut ends when its last byte is in (the connection stays open).
        const length = Number(answer.headers['content-length'] ?? Number.POSITIVE_INFINITY)
        let bytes = rest.length
        socket.on('data', (piece: Buffer) => {
          bytes += piece.length
          if (bytes >= length) resolve(bytes)
        })
        socket.once('close', () => resolve(bytes))
        socket.resume()
      }),
  }
}

export interface TrickledUpload {
  socket: Socket
  /** The server's answer, whenever it comes (a 429 at once, a 408 at a deadline); rejects if it cuts without one. */
  answer: Promise<RawAnswer>
  /** Resolves when the connection is gone, however it ended. */
  closed: Promise<void>
  stop(): void
}

/**
 * POST /v1/blobs announcing `declaredBytes`, sending `firstBytes` at once and
 * then one byte every `everyMs` (never, if 0) until stopped or answered.
 */
export async function trickledUpload(server: string, token: string, options: {declaredBytes: number; firstBytes: number; everyMs: number}): Promise<TrickledUpload> {
  const socket = await dial(server)
  const closed = once(socket, 'close').then(() => undefined)
  socket.write(
    `POST /v1/blobs HTTP/1.1\r\nHost: fastchat\r\nAuthorization: Bearer ${token}\r\n` +
      `Content-Type: application/octet-stream\r\nContent-Length: ${options.declaredBytes}\r\n\r\n`,
  )
  socket.write(Buffer.alloc(options.firstBytes, 1))
  const timer = options.everyMs > 0 ? setInterval(() => socket.writable && socket.write(Buffer.alloc(1, 2)), options.everyMs) : undefined
  const stop = () => clearInterval(timer)
  socket.once('close', stop)
  const answer = readHead(socket).then(({answer, rest}) => {
    stop()
    return readBody(socket, answer, rest)
  })
  answer.catch(() => undefined)
  return {socket, answer, closed, stop}
}

/** `total` bytes, made as they are read (64 KiB at a time), so a large upload body costs no memory. */
export function generatedBytes(total: number): Readable {
  let sent = 0
  return new Readable({
    read() {
      if (sent >= total) return this.push(null)
      const size = Math.min(64 * 1024, total - sent)
      sent += size
      this.push(Buffer.alloc(size, sent % 251))
    },
  })
}

/** POST /v1/blobs of `total` generated bytes, announced (Content-Length) or chunked; resolves with the answer. */
export function uploadBytes(server: string, auth: Record<string, string>, total: number, announced = true): Promise<{status: number; body: any}> {
  return new Promise((resolve, reject) => {
    const request = httpRequest(`${server}/v1/blobs`, {
      method: 'POST',
      headers: {'content-type': 'application/octet-stream', ...auth, ...(announced ? {'content-length': total} : {})},
    })
    request.on('response', (response) => {
      const parts: Buffer[] = []
      response.on('data', (part: Buffer) => parts.push(part))
      response.on('end', () => resolve({status: response.statusCode!, body: JSON.parse(Buffer.concat(parts).toString() || 'null')}))
    })
    request.on('error', reject)
    generatedBytes(total).pipe(request)
  })
}
