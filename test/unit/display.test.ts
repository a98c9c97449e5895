import {expect} from 'chai'
import fc from 'fast-check'

import {CONTINUATION, jsonText, multiLine, singleLine} from '../../commands/_lib/display.js'
import {formatMessage} from '../../commands/_lib/format.js'
import type {OpenedMessage} from '../../client/receive.js'

/** Issue 12, hole 2 (and 3): the one sanitizer every string from outside passes before it is printed. */

/** What must never reach a terminal raw: controls, format characters, line and paragraph separators, lone surrogates. */
const UNSAFE = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}]/u
/** The same, but for message text, which keeps the zero-width joiner and non-joiner. */
const UNSAFE_IN_TEXT = /(?![\u200c\u200d])[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}]/u

/** Strings made mostly of the characters attacks are made of, so that every run meets them. */
const hostile = fc.string({
  unit: fc.oneof(
    fc.constantFrom('\n', '\r', '\r\n', '\t', '\u000b', '\u000c', '\u001b', '\u0007', '\u007f', '\u0085', '\u009b', '\u009d', '['),
    fc.constantFrom('\u2028', '\u2029', '\u202e', '\u2066', '\u200b', '\u200c', '\u200d', '\u200e', '\ufeff', '\u00ad', '\ud800', '\udfff', '\u{e0041}'),
    fc.constantFrom('[2026-12-01T17:49:00.000Z] carol: hi  ✔ verified', '* carol added you to friends', 'WARNING: ', '  caption: '),
    fc.string({unit: 'binary', maxLength: 3}),
  ),
  maxLength: 40,
})
/** Any string at all, lone surrogates included. */
const anything = fc.oneof(hostile, fc.string({unit: 'binary'}), fc.string({unit: fc.integer({min: 0, max: 0xffff}).map((code) => String.fromCharCode(code))}))

const textMessage = (text: string, fields: {from?: string; sentAt?: string; id?: string} = {}): OpenedMessage => ({
  id: fields.id ?? '0b7e4a0c-1d2e-4f3a-8b9c-0d1e2f3a4b5c',
  from: fields.from ?? 'alice',
  to: 'bob',
  sentAt: fields.sentAt ?? '2026-12-01T17:48:00.000Z',
  keyChanged: false,
  kind: 'text',
  text,
  verification: {status: 'valid', signerFingerprint: 'a'.repeat(40)},
})

describe('the sanitizer (commands/_lib/display.ts)', () => {
  it('hole 2: singleLine leaves no control, format or separator character, so the result is one line', () => {
    fc.assert(
      fc.property(anything, (text) => {
        const line = singleLine(text)
        expect(line).not.to.match(UNSAFE)
        expect(line).not.to.include('\n')
      }),
      {numRuns: 2000},
    )
  })

  it('singleLine escapes visibly, leaves safe text alone, and is idempotent', () => {
    expect(singleLine('a\nb\tc\rd\u001b]0;x\u0007\u009b\u202e\u200b\u{e0041}')).to.equal('a\\nb\\tc\\rd\\x1b]0;x\\x07\\x9b\\u202e\\u200b\\u{e0041}')
    expect(singleLine('photo (1).png — ünïcödé 😀')).to.equal('photo (1).png — ünïcödé 😀')
    fc.assert(
      fc.property(anything, (text) => {
        expect(singleLine(singleLine(text))).to.equal(singleLine(text))
      }),
    )
  })

  it('hole 2: multiLine keeps the lines, and no line after the first can start like a header', () => {
    fc.assert(
      fc.property(anything, (text) => {
        const lines = multiLine(text)
        expect(lines).to.have.length(text.split(/\r?\n/).length)
        lines.forEach((line, i) => {
          expect(line).not.to.match(UNSAFE_IN_TEXT)
          expect(line).not.to.include('\n')
          if (i > 0) {
            expect(line.startsWith(CONTINUATION), line).to.equal(true)
            expect(line.startsWith('[')).to.equal(false)
          }
        })
      }),
      {numRuns: 2000},
    )
    expect(CONTINUATION).not.to.match(/^\[/).and.not.to.equal('')
  })

  it('multiLine keeps emoji sequences and turns tabs into spaces', () => {
    expect(multiLine('family 👨‍👩‍👧\n\tindented\r\nlast\rover')).to.deep.equal(['family 👨‍👩‍👧', `${CONTINUATION}    indented`, `${CONTINUATION}last\\rover`])
  })

  it('hole 2: a text message is printed with exactly one line that starts like a header, whatever its text, sender or time', () => {
    fc.assert(
      fc.property(anything, anything, anything, (text, from, sentAt) => {
        const lines = formatMessage(textMessage(text, {from, sentAt}))
        expect(lines.filter((line) => line.startsWith('['))).to.have.length(1)
        expect(lines[0]!.startsWith('[')).to.equal(true)
        for (const line of lines) expect(line).not.to.match(UNSAFE_IN_TEXT)
      }),
      {numRuns: 1000},
    )
  })

  it('hole 2: the forged line of the issue stays inside the message that carried it', () => {
    const lines = formatMessage(textMessage('ok\n[2026-12-01T17:49:00.000Z] carol: my new number is 555-0100  ✔ verified'))
    expect(lines).to.deep.equal([
      '[2026-12-01T17:48:00.000Z] alice: ok  ✔ verified',
      `${CONTINUATION}[2026-12-01T17:49:00.000Z] carol: my new number is 555-0100  ✔ verified`,
    ])
  })

  it('hole 3: jsonText is the same JSON, with no DEL, C1 or format character left raw', () => {
    fc.assert(
      fc.property(fc.array(anything), fc.dictionary(anything, anything), (list, record) => {
        const value = {list, record}
        const json = jsonText(value, 2)
        expect(JSON.parse(json)).to.deep.equal(JSON.parse(JSON.stringify(value)))
        expect(json.replaceAll('\n', '')).not.to.match(UNSAFE)
      }),
      {numRuns: 1000},
    )
  })
})
