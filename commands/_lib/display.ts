/**
 * The one sanitizer (DESIGN.md section 4; docs/cli.md "What is printed").
 * Every string from outside this process (message text, captions, names, file
 * names, anything a server answered, problem details) passes `singleLine` or
 * `multiLine` before it reaches a terminal, and JSON output passes
 * `jsonText`. An escape sequence in any of them could set the window title,
 * write the clipboard (OSC 52) or rewrite earlier lines (a forged
 * "✔ verified"); a newline could add a line that looks like another
 * person's message.
 */

/**
 * Never printed as they are: controls (C0, DEL, C1), format characters
 * (bidi embeddings, overrides and isolates, zero-width characters, the BOM,
 * soft hyphen, tag characters...), line and paragraph separators, and lone
 * surrogates.
 */
const UNSAFE = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}]/gu

/**
 * Kept in message text: emoji sequences and several scripts (Persian,
 * Hindi...) need the zero-width joiner and non-joiner, and neither moves the
 * cursor or reorders text.
 */
const JOINERS = new Set(['\u200c', '\u200d'])

/** Continuation lines of a message start with this, so no line of a message can start like a header (`[`), a group notice (`*`) or a warning. */
export const CONTINUATION = '  | '

/** A tab in message text: spaces, as the terminal would have shown it, without the control character. */
const TAB_SPACES = '    '

const NAMED_ESCAPES = new Map([
  ['\n', '\\n'],
  ['\r', '\\r'],
  ['\t', '\\t'],
])

const hex = (code: number, digits: number) => code.toString(16).padStart(digits, '0')

/** `\n`, `\t`, `\r`; `\x1b` below U+0100; `\u202e`; `\u{e0041}` beyond U+FFFF. */
function escape(char: string): string {
  const named = NAMED_ESCAPES.get(char)
  if (named) return named
  const code = char.codePointAt(0)!
  if (code < 0x100) return `\\x${hex(code, 2)}`
  if (code <= 0xffff) return `\\u${hex(code, 4)}`
  return `\\u{${code.toString(16)}}`
}

/**
 * For fields that are one line: names, file names, captions, ids, times,
 * fingerprints, problem details, reasons. Every character above is escaped,
 * newline and tab included, so the result is one line of visible text.
 * Backslashes are left as they are: the escapes are for reading, not for
 * decoding back.
 */
export function singleLine(text: string): string {
  return text.replace(UNSAFE, escape)
}

/**
 * For a message's text, which may have lines: one string per line (a line
 * ends at LF or CRLF; a lone CR is escaped, since it would return to the
 * start of the line and print over it). The first line is returned as it is,
 * for the caller to put after the message's header; every other line starts
 * with `indent` (CONTINUATION by default, which must not be empty nor start
 * with `[`). Characters are escaped as by singleLine, except that tabs become
 * spaces and zero-width joiners are kept.
 */
export function multiLine(text: string, indent = CONTINUATION): string[] {
  return text.split(/\r?\n/).map((line, i) => {
    const safe = line.replaceAll('\t', TAB_SPACES).replace(UNSAFE, (char) => (JOINERS.has(char) ? char : escape(char)))
    return i === 0 ? safe : `${indent}${safe}`
  })
}

/** Besides what JSON.stringify escapes (C0 controls, lone surrogates): DEL, C1 controls (U+009B is CSI to some terminals) and format characters. */
const JSON_UNSAFE = /[\u007f-\u009f\p{Cf}\p{Zl}\p{Zp}]/gu

/**
 * JSON for stdout: the same value as JSON.stringify gives (a program reading
 * it gets every string exactly as received), written so that a terminal
 * showing it sees no control or format character, only `\uXXXX` escapes.
 */
export function jsonText(value: unknown, indent?: number): string {
  const json = JSON.stringify(value, null, indent) ?? 'null'
  return json.replace(JSON_UNSAFE, (char) => [...Array(char.length).keys()].map((i) => `\\u${hex(char.charCodeAt(i), 4)}`).join(''))
}

