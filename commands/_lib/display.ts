/**
 * Text from the network must not drive the terminal: escape sequences could
 * rewrite earlier lines (a forged "✔ verified", say). Control characters other
 * than newline and tab are shown as \uXXXX.
 */
export function printable(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)
}
