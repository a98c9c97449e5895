/**
 * How the library tells its caller that a transfer moved: the CLI draws bars
 * (commands/_lib/progress.ts), a program may count bytes or ignore it.
 */

export interface Progress {
  /** `bytes` more were transferred. */
  advance(bytes: number): void
  /** The transfer ended (done or failed): the bar is cleared from the terminal. */
  stop(): void
}

const silent: Progress = {advance: () => undefined, stop: () => undefined}

/** Makes one Progress per transfer; `total` is the byte count to expect (0 when unknown). */
export type ProgressFactory = (label: string, total: number) => Progress

/** No bars at all: for --json, pipes, tests. */
export const noProgress: ProgressFactory = () => silent

