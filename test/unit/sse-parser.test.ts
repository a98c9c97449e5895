import {expect} from 'chai'

import {MAX_STREAM_EVENT_CHARS} from '../../client/event-stream.js'
import {type SseEvent, SseParser, SseTooLarge} from '../../client/sse-parser.js'

/** Issue 14: the client's SSE parsing (WHATWG HTML, "server-sent events"), fed as the network cuts it. */

/** All events of `bytes` fed in pieces cut at `cuts` (byte offsets). */
function parse(bytes: Uint8Array, cuts: number[] = [], max = MAX_STREAM_EVENT_CHARS): SseEvent[] {
  const parser = new SseParser(max)
  const events: SseEvent[] = []
  let from = 0
  for (const cut of [...cuts, bytes.byteLength]) {
    events.push(...parser.push(bytes.subarray(from, cut)))
    from = cut
  }
  events.push(...parser.end())
  return events
}

const utf8 = (text: string) => new TextEncoder().encode(text)

/** What the server writes (docs/api.md "Streaming events (SSE)"), with a multi-byte character in it. */
const STREAM =
  'retry: 1000\nevent: ready\ndata: {"next":6,"heartbeatMs":15000}\n\n' +
  ': heartbeat\n\n' +
  'id: 7\nevent: message\ndata: {"seq":7,"from":"zoë","text":"héllo 👋"}\n\n' +
  'id: 8\nevent: group.created\ndata: {"seq":8}\n\n'

const EXPECTED: SseEvent[] = [
  {type: 'ready', data: '{"next":6,"heartbeatMs":15000}', id: ''},
  {type: 'message', data: '{"seq":7,"from":"zoë","text":"héllo 👋"}', id: '7'},
  {type: 'group.created', data: '{"seq":8}', id: '8'},
]

describe('SSE parser', () => {
  it('reads the server stream: events, data, ids, retry; a heartbeat comment dispatches nothing', () => {
    const parser = new SseParser(MAX_STREAM_EVENT_CHARS)
    expect(parser.push(utf8(STREAM))).to.deep.equal(EXPECTED)
    expect(parser.retryMs).to.equal(1000)
  })

  it('gives the same events wherever the chunks are cut, also inside a UTF-8 character and between CR and LF', () => {
    for (const ends of ['\n', '\r\n', '\r']) {
      const bytes = utf8(STREAM.replaceAll('\n', ends))
      // Every single cut, and every pair of cuts a few bytes apart.
      for (let cut = 0; cut <= bytes.byteLength; cut++) {
        expect(parse(bytes, [cut]), `${JSON.stringify(ends)} cut at ${cut}`).to.deep.equal(EXPECTED)
        for (const gap of [1, 2, 3]) if (cut + gap <= bytes.byteLength) expect(parse(bytes, [cut, cut + gap]), `cuts at ${cut}, ${cut + gap}`).to.deep.equal(EXPECTED)
      }
      // One byte at a time.
      expect(parse(bytes, [...bytes.keys()].slice(1))).to.deep.equal(EXPECTED)
    }
  })

  it('cuts a 4-byte character in every place it can be cut', () => {
    const bytes = utf8('data: 👋\n\n')
    const start = bytes.indexOf(0xf0)
    for (let cut = start + 1; cut < start + 4; cut++) expect(parse(bytes, [cut])).to.deep.equal([{type: 'message', data: '👋', id: ''}])
  })

  it('joins data lines with LF, keeps the id across events, and follows the field rules', () => {
    const text =
      '\uFEFFdata: one\ndata:two\ndata\ndata:  three\n\n' + // BOM dropped; one space after the colon removed, not two; `data` alone is an empty line
      'id: 5\ndata: a\n\n' +
      'data: b\n\n' + // no id: the last one stays
      'id: 6\u00007\ndata: c\n\n' + // an id with NUL is ignored
      'event: custom\n\n' + // no data: nothing dispatched, and the type does not carry over
      'data: d\n\n' +
      'unknown: x\nretry: soon\ndata: e\n\n' + // unknown fields and a non-numeric retry are ignored
      'id\ndata: f\n\n' // `id` alone empties it
    const parser = new SseParser(1000)
    expect(parser.push(utf8(text))).to.deep.equal([
      {type: 'message', data: 'one\ntwo\n\n three', id: ''},
      {type: 'message', data: 'a', id: '5'},
      {type: 'message', data: 'b', id: '5'},
      {type: 'message', data: 'c', id: '5'},
      {type: 'message', data: 'd', id: '5'},
      {type: 'message', data: 'e', id: '5'},
      {type: 'message', data: 'f', id: ''},
    ])
    expect(parser.retryMs).to.equal(undefined)
  })

  it('discards an event the stream ends in the middle of', () => {
    expect(parse(utf8('data: whole\n\ndata: cut off\n'))).to.deep.equal([{type: 'message', data: 'whole', id: ''}])
    expect(parse(utf8('data: no line end'))).to.deep.equal([])
  })

  it('refuses an event larger than its cap, whether in one data line, many lines, or a line without end; an event at the cap passes', () => {
    const max = 1000
    // The line counts with its field name: `data: ` and max - 6 characters is exactly at the cap.
    expect(parse(utf8(`data: ${'x'.repeat(max - 6)}\n\n`), [7, 500], max)).to.deep.equal([{type: 'message', data: 'x'.repeat(max - 6), id: ''}])
    expect(() => parse(utf8(`data: ${'x'.repeat(max)}\n\n`), [], max)).to.throw(SseTooLarge)
    expect(() => parse(utf8(`data: ${'x'.repeat(99)}\n`.repeat(11) + '\n'), [], max)).to.throw(SseTooLarge)
    // Never buffered without end: a line that does not end is refused as it grows, chunk by chunk.
    const parser = new SseParser(max)
    expect(() => {
      for (let i = 0; i < 100; i++) parser.push(utf8(': '.padEnd(100, 'y')))
    }).to.throw(SseTooLarge)
    // Comments and events under the cap, however many, are fine: the cap is per event.
    expect(parse(utf8(`: ${'h'.repeat(900)}\n\n`.repeat(50) + `data: ${'z'.repeat(900)}\n\n`.repeat(3)), [], max)).to.have.length(3)
  })

  it('caps an event at twice the ciphertext limit plus its envelope', () => {
    expect(MAX_STREAM_EVENT_CHARS).to.equal(2 * 64 * 1024 + 64 * 1024)
  })
})
