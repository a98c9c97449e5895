/**
 * Server-sent events as the WHATWG spec parses them
 * (https://html.spec.whatwg.org/multipage/server-sent-events.html, "Event
 * stream interpretation"), incrementally and bounded: for the chat server's
 * event stream (./event-stream.ts) and the daemon's (./daemon/connection.ts).
 */

/** One dispatched event; `id` is the last event ID as it stands after it (the spec's: it persists across events). */
export interface SseEvent {
  type: string
  data: string
  id: string
}

/** An event (or a line) beyond the parser's cap: the stream is refused, not buffered without end. */
export class SseTooLarge extends Error {
  constructor(readonly limit: number) {
    super(`an event is larger than ${limit} characters`)
    this.name = 'SseTooLarge'
  }
}

const LINE_BREAK = /[\r\n]/g

/**
 * Incremental SSE parsing: bytes in, events out. UTF-8 is decoded with
 * `stream: true`, so a character cut between two chunks is joined; lines end
 * with CRLF, LF or CR (a CR at the end of a chunk waits to see whether an LF
 * follows). What one event holds (its data, and the line being read) is
 * bounded by `maxEventChars`; beyond it SseTooLarge is thrown.
 */
export class SseParser {
  /** The `retry:` field's last value, in ms. */
  retryMs?: number
  private readonly decoder = new TextDecoder('utf-8')
  /** The line read so far, without its end. */
  private partial = ''
  /** The last chunk ended with CR: an LF starting the next one belongs to that line break. */
  private afterCR = false
  private data = ''
  private hasData = false
  private eventType = ''
  private lastEventId = ''

  constructor(readonly maxEventChars: number) {}

  /** The last event ID, also one set by an `id:` without data (which dispatches nothing). */
  get lastId(): string {
    return this.lastEventId
  }

  /** The events that `chunk` completes. */
  push(chunk: Uint8Array): SseEvent[] {
    return this.feed(this.decoder.decode(chunk, {stream: true}))
  }

  /** At the end of the stream: the spec discards an event not ended by a blank line. */
  end(): SseEvent[] {
    this.feed(this.decoder.decode())
    this.partial = ''
    this.data = ''
    this.hasData = false
    this.eventType = ''
    return []
  }

  private feed(text: string): SseEvent[] {
    const events: SseEvent[] = []
    let start = 0
    if (this.afterCR && text.startsWith('\n')) start = 1
    if (text.length > 0) this.afterCR = false
    LINE_BREAK.lastIndex = start
    for (let match = LINE_BREAK.exec(text); match; match = LINE_BREAK.exec(text)) {
      const at = match.index
      const line = this.partial + text.slice(start, at)
      this.partial = ''
      this.check(line.length)
      this.line(line, events)
      start = at + 1
      if (text[at] === '\r') {
        if (at + 1 === text.length) this.afterCR = true
        else if (text[at + 1] === '\n') start = at + 2
      }
      LINE_BREAK.lastIndex = start
    }
    this.partial += text.slice(start)
    this.check(this.partial.length)
    return events
  }

  private check(lineChars: number): void {
    if (this.data.length + lineChars > this.maxEventChars) throw new SseTooLarge(this.maxEventChars)
  }

  private line(line: string, events: SseEvent[]): void {
    if (line === '') return this.dispatch(events)
    if (line.startsWith(':')) return
    const colon = line.indexOf(':')
    const field = colon === -1 ? line : line.slice(0, colon)
    let value = colon === -1 ? '' : line.slice(colon + 1)
    if (value.startsWith(' ')) value = value.slice(1)
    switch (field) {
      case 'event':
        this.eventType = value
        return
      case 'data':
        this.data = this.hasData ? `${this.data}\n${value}` : value
        this.hasData = true
        return
      case 'id':
        if (!value.includes('\u0000')) this.lastEventId = value
        return
      case 'retry':
        if (/^\d+$/.test(value)) this.retryMs = Number(value)
        return
      default:
        // Fields the spec does not know are ignored.
        return
    }
  }

  private dispatch(events: SseEvent[]): void {
    if (this.hasData) events.push({type: this.eventType || 'message', data: this.data, id: this.lastEventId})
    this.data = ''
    this.hasData = false
    this.eventType = ''
  }
}
