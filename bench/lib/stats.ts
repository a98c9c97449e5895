/** Percentiles and plain-text tables for the benchmark's figures. */

export interface Percentiles {
  count: number
  /** Milliseconds, rounded to 0.01. */
  p50: number
  p95: number
  p99: number
  max: number
  mean: number
}

/** Nearest-rank percentiles of `values` (milliseconds); all zero when empty. */
export function percentiles(values: ArrayLike<number>): Percentiles {
  const sorted = Float64Array.from(values).sort()
  const n = sorted.length
  if (n === 0) return {count: 0, p50: 0, p95: 0, p99: 0, max: 0, mean: 0}
  const at = (q: number) => round(sorted[Math.min(n - 1, Math.max(0, Math.ceil(q * n) - 1))]!)
  let sum = 0
  for (const value of sorted) sum += value
  return {count: n, p50: at(0.5), p95: at(0.95), p99: at(0.99), max: round(sorted[n - 1]!), mean: round(sum / n)}
}

export function median(values: number[]): number {
  if (values.length === 0) return 0
  const sorted = [...values].sort((a, b) => a - b)
  const middle = sorted.length >> 1
  return round(sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2)
}

export function round(value: number, digits = 2): number {
  const scale = 10 ** digits
  return Math.round(value * scale) / scale
}

export const mib = (bytes: number) => round(bytes / 1024 / 1024, 1)

/**
 * A compact table: the first row is the header, the first column is left
 * aligned, the others right aligned (they are numbers).
 */
export function table(rows: Array<Array<string | number>>): string {
  const cells = rows.map((row) => row.map((cell) => String(cell)))
  const widths = cells[0]!.map((_, column) => Math.max(...cells.map((row) => (row[column] ?? '').length)))
  const line = (row: string[]) =>
    row.map((cell, column) => (column === 0 ? cell.padEnd(widths[column]!) : cell.padStart(widths[column]!))).join('  ').trimEnd()
  return [line(cells[0]!), widths.map((width) => '-'.repeat(width)).join('  '), ...cells.slice(1).map(line)].join('\n')
}
