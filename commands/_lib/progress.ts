import cliProgress from 'cli-progress'

import {formatSize} from '../../client/downloads.js'
import {noProgress, type Progress, type ProgressFactory} from '../../client/progress.js'
import {singleLine} from './display.js'

/**
 * Progress bars for uploads and downloads (DESIGN.md section 6: "long
 * transfers show progress on a terminal and stay quiet when piped"). A bar is
 * drawn on stderr only when stderr is a terminal and --json is off; otherwise
 * every call here does nothing, so callers never check.
 */

export {noProgress, type Progress, type ProgressFactory} from '../../client/progress.js'

/** Bars on `stream` when it is a terminal and `json` is off; otherwise noProgress. */
export function progressFor(options: {json: boolean; stream?: NodeJS.WriteStream}): ProgressFactory {
  const stream = options.stream ?? process.stderr
  if (options.json || !stream.isTTY) return noProgress
  return (label, total) => transferBar(stream, label, total)
}

const LABEL_CHARS = 32

const shorten = (text: string, max: number) => {
  const chars = [...text]
  return chars.length <= max ? text : `${chars.slice(0, max - 1).join('')}…`
}

/** One bar, for a terminal: `label [=====-----] 42% 1.2 MiB/2.9 MiB`. */
export function transferBar(stream: NodeJS.WritableStream, name: string, total: number): Progress {
  // The label comes from a file name: no escape sequences into the terminal, and short enough for one line.
  const label = shorten(singleLine(name), LABEL_CHARS)
  let done = 0
  const size = total > 0 ? formatSize(total) : '?'
  const bar = new cliProgress.SingleBar(
    {
      stream,
      format: (options, params, payload: {transferred: string}) => {
        const width = options.barsize ?? 30
        const filled = total > 0 ? Math.round(Math.min(1, params.value / total) * width) : 0
        const percent = total > 0 ? `${String(Math.floor(Math.min(1, params.value / total) * 100)).padStart(3)}%` : '   '
        return `${label} [${'='.repeat(filled)}${'-'.repeat(width - filled)}] ${percent} ${payload.transferred}/${size}`
      },
      barsize: 30,
      fps: 10,
      clearOnComplete: true,
      hideCursor: false,
      // Should a stream that is not a terminal get here, draw nothing on it.
      noTTYOutput: false,
    },
    cliProgress.Presets.legacy,
  )
  bar.start(Math.max(total, 1), 0, {transferred: formatSize(0)})
  let stopped = false
  return {
    advance(bytes) {
      if (stopped) return
      done += bytes
      bar.update(Math.min(done, Math.max(total, 1)), {transferred: formatSize(done)})
    },
    stop() {
      if (stopped) return
      stopped = true
      bar.stop()
    },
  }
}
