import {once} from 'node:events'
import {createServer, type IncomingMessage, type Server} from 'node:http'
import type {AddressInfo} from 'node:net'

/**
 * A malicious operator, for tests: a superserver and chat server in one
 * listener that forwards every request to a real chat server and may rewrite
 * any answer on the way back. `GET /v1/assign` names the proxy itself, so a
 * CLI profile registered with `--superserver <proxy.url>` talks only to it.
 *
 *   const proxy = await MaliciousProxy.start(realServer.url)
 *   proxy.rewrite('GET', /^\/v1\/events/, (body) => ({...body, events: body.events.map(...)}))
 *   proxy.answer('GET', /^\/v1\/users\/eve$/, () => ({status: 200, json: {...}}))
 */

export interface ProxiedRequest {
  method: string
  /** Path and query, as the client sent them. */
  url: string
  headers: IncomingMessage['headers']
  body: Buffer
}

export interface ForgedAnswer {
  status: number
  json?: unknown
  /** Raw bytes (with `contentType`) instead of JSON. */
  body?: Buffer | string
  contentType?: string
}

type Answerer = (request: ProxiedRequest) => ForgedAnswer | undefined | Promise<ForgedAnswer | undefined>
type Rewriter = (body: any, request: ProxiedRequest, status: number) => unknown

interface Rule {
  method: string
  path: RegExp
  answer?: Answerer
  rewrite?: Rewriter
}

export class MaliciousProxy {
  private readonly rules: Rule[] = []
  /** Every request seen, oldest first. */
  readonly seen: ProxiedRequest[] = []

  private constructor(
    private readonly server: Server,
    readonly url: string,
    readonly upstream: string,
  ) {}

  static async start(upstream: string): Promise<MaliciousProxy> {
    let proxy: MaliciousProxy | undefined
    const server = createServer((req, res) => {
      proxy!.handle(req).then(
        (answer) => {
          const body = answer.json !== undefined ? Buffer.from(JSON.stringify(answer.json)) : Buffer.from(answer.body ?? '')
          const contentType = answer.json !== undefined ? (answer.contentType ?? 'application/json') : (answer.contentType ?? 'application/octet-stream')
          res.writeHead(answer.status, {'content-type': contentType, 'content-length': String(body.byteLength)}).end(body)
        },
        (error: unknown) => res.writeHead(502, {'content-type': 'text/plain'}).end(String(error)),
      )
    })
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    const {port} = server.address() as AddressInfo
    proxy = new MaliciousProxy(server, `http://127.0.0.1:${port}`, upstream)
    return proxy
  }

  /** Answers matching requests itself when `answer` returns something (else forwards them). */
  answer(method: string, path: RegExp, answer: Answerer): this {
    this.rules.push({method, path, answer})
    return this
  }

  /** Forwards matching requests, then replaces the JSON answer with what `rewrite` returns. */
  rewrite(method: string, path: RegExp, rewrite: Rewriter): this {
    this.rules.push({method, path, rewrite})
    return this
  }

  /** Forgets every rule: an honest proxy from now on. */
  reset(): void {
    this.rules.length = 0
  }

  async close(): Promise<void> {
    this.server.closeAllConnections()
    await new Promise<void>((resolve) => this.server.close(() => resolve()))
  }

  private async handle(req: IncomingMessage): Promise<ForgedAnswer> {
    const chunks: Buffer[] = []
    for await (const chunk of req) chunks.push(chunk as Buffer)
    const request: ProxiedRequest = {method: req.method ?? 'GET', url: req.url ?? '/', headers: req.headers, body: Buffer.concat(chunks)}
    this.seen.push(request)
    const path = request.url.split('?')[0]!
    const rules = this.rules.filter((rule) => rule.method === request.method && rule.path.test(path))
    for (const rule of rules) {
      const forged = await rule.answer?.(request)
      if (forged) return forged
    }
    if (request.method === 'GET' && path === '/v1/assign') return {status: 200, json: {server: this.url}}

    const headers: Record<string, string> = {}
    for (const [name, value] of Object.entries(req.headers)) {
      if (typeof value === 'string' && !['host', 'connection', 'content-length', 'transfer-encoding'].includes(name)) headers[name] = value
    }
    // It reads whole answers, so it cannot pass a stream on: it asks for the JSON poll instead, and the client falls back to polling.
    if (/text\/event-stream/.test(headers.accept ?? '')) headers.accept = 'application/json'
    const hasBody = !['GET', 'HEAD'].includes(request.method)
    const upstream = await fetch(new URL(request.url, this.upstream), {method: request.method, headers, body: hasBody ? new Uint8Array(request.body) : undefined})
    const contentType = upstream.headers.get('content-type') ?? 'application/octet-stream'
    const bytes = Buffer.from(await upstream.arrayBuffer())
    const rewriters = rules.filter((rule) => rule.rewrite)
    if (rewriters.length === 0 || !/json/.test(contentType)) return {status: upstream.status, body: bytes, contentType}
    let json: unknown = bytes.byteLength > 0 ? JSON.parse(bytes.toString('utf8')) : undefined
    for (const rule of rewriters) json = rule.rewrite!(json, request, upstream.status)
    return {status: upstream.status, json, contentType}
  }
}
