import {request} from 'node:http'

/** One SSE event as a test sees it: a comment (heartbeat) has `comment` set. */
export interface SseEvent {
  id?: string
  event?: string
  data?: string
  comment?: string
}

/**
 * A raw GET /v1/events stream in a test: node:http, so nothing between the
 * socket and the test buffers or reconnects. `next()` waits for the next
 * event or comment (rejecting after `timeoutMs`); `ended` settles when the
 * server ends the answer.
 */
export interface RawStream {
  status: number
  headers: Record<string, string | string[] | undefined>
  /** The body, when the answer is not a stream (a problem). */
  body: Promise<string>
  next(timeoutMs?: number): Promise<SseEvent>
  /** Events until one matches, skipping the rest. */
  until(match: (event: SseEvent) => boolean, timeoutMs?: number): Promise<SseEvent>
  ended: Promise<void>
  close(): void
}

export function openStream(url: string, headers: Record<string, string>): Promise<RawStream> {
  return new Promise((resolve, reject) => {
    const req = request(url, {headers: {accept: 'text/event-stream', ...headers}}, (res) => {
      const queue: SseEvent[] = []
      const waiting: ((event: SseEvent | undefined) => void)[] = []
      let ended = false
      let buffer = ''
      let text = ''
      let current: SseEvent = {}
      const push = (event: SseEvent) => {
        const waiter = waiting.shift()
        if (waiter) waiter(event)
        else queue.push(event)
      }
      const isStream = (res.headers['content-type'] ?? '').startsWith('text/event-stream')
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => {
        if (!isStream) {
          text += chunk
          return
        }
        buffer += chunk
        let at: number
        while ((at = buffer.indexOf('\n')) >= 0) {
          const line = buffer.slice(0, at)
          buffer = buffer.slice(at + 1)
          if (line === '') {
            if (Object.keys(current).length > 0) push(current)
            current = {}
          } else if (line.startsWith(':')) {
            push({comment: line.slice(1).trim()})
          } else {
            const colon = line.indexOf(':')
            const field = colon < 0 ? line : line.slice(0, colon)
            const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '')
            if (field === 'data') current.data = current.data === undefined ? value : `${current.data}\n${value}`
            else if (field === 'id' || field === 'event') current[field] = value
          }
        }
      })
      const endedPromise = new Promise<void>((done) => {
        const finish = () => {
          ended = true
          for (const waiter of waiting.splice(0)) waiter(undefined)
          done()
        }
        res.on('end', finish)
        res.on('close', finish)
        res.on('error', finish)
      })
      const next = (timeoutMs = 5_000) =>
        new Promise<SseEvent>((resolveEvent, rejectEvent) => {
          const queued = queue.shift()
          if (queued) return resolveEvent(queued)
          if (ended) return rejectEvent(new Error('the stream ended'))
          const timer = setTimeout(() => {
            waiting.splice(waiting.indexOf(deliver), 1)
            rejectEvent(new Error(`no event within ${timeoutMs} ms`))
          }, timeoutMs)
          const deliver = (event: SseEvent | undefined) => {
            clearTimeout(timer)
            if (event) resolveEvent(event)
            else rejectEvent(new Error('the stream ended'))
          }
          waiting.push(deliver)
        })
      resolve({
        status: res.statusCode ?? 0,
        headers: res.headers,
        body: endedPromise.then(() => text),
        next,
        async until(match, timeoutMs = 5_000) {
          const deadline = Date.now() + timeoutMs
          for (;;) {
            const event = await next(Math.max(1, deadline - Date.now()))
            if (match(event)) return event
          }
        },
        ended: endedPromise,
        close: () => req.destroy(),
      })
    })
    req.on('error', reject)
    req.end()
  })
}

/** The JSON of an SSE event's data. */
export const dataOf = <T = any>(event: SseEvent): T => JSON.parse(event.data ?? 'null') as T
