import {AsyncLocalStorage} from 'node:async_hooks'

import type {Report, Reporter} from '../reports.js'

/**
 * The daemon's client has one `onReport`, and serves many requests at once.
 * A report (a key pinned on first use, a cursor reset) belongs to the request
 * whose work made it: each request runs in its own context, which collects
 * them for its answer, so that `fastchat send` through the daemon prints the
 * same notes as without it. Reports made outside any request (the webhook
 * loop, a stream between its pages) go to `fallback`.
 */
export class ReportRouter {
  private readonly context = new AsyncLocalStorage<Report[]>()

  constructor(readonly fallback: Reporter) {}

  /** The client's onReport. */
  readonly reporter: Reporter = (report) => {
    const collected = this.context.getStore()
    if (collected) collected.push(report)
    else this.fallback(report)
  }

  /** Runs `work`, collecting the reports it makes. */
  async collect<T>(work: () => Promise<T>): Promise<{value: T; reports: Report[]}> {
    const reports: Report[] = []
    const value = await this.context.run(reports, work)
    return {value, reports}
  }
}
