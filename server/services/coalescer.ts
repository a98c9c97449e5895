interface Waiting<T> {
  item: T
  resolve: () => void
  reject: (error: unknown) => void
}

/**
 * Runs `write` over the items that arrive close together: one run at a time,
 * and runs at least `spacingMs` apart (start to start). An item that finds
 * the coalescer idle (nothing running, the last run started long enough ago)
 * goes at once, with whatever arrived in the same turn of the event loop, so
 * a quiet server answers as fast as without it; under load, what arrives
 * during a run or within `spacingMs` of its start waits for the next, and
 * goes with the others, in one statement and one commit. Each item's promise
 * settles when the run that carried it has. A run with several items that
 * fails in a way `split` says one item may have caused is run again once per
 * item, so a bad item fails alone; any other failure fails them all.
 */
export class Coalescer<T> {
  private queue: Waiting<T>[] = []
  private running = false
  private timer: NodeJS.Timeout | undefined
  private lastStart = Number.NEGATIVE_INFINITY

  constructor(
    private readonly write: (items: T[]) => Promise<void>,
    private readonly spacingMs: number,
    /** Most items in one run; the rest wait for the next. */
    private readonly maxItems: number,
    private readonly split: (error: unknown) => boolean,
  ) {}

  add(item: T): Promise<void> {
    return new Promise((resolve, reject) => {
      this.queue.push({item, resolve, reject})
      this.schedule()
    })
  }

  private schedule(): void {
    if (this.running || this.timer || this.queue.length === 0) return
    // Bounded by the spacing: a clock set back cannot hold the queue any longer than that.
    const wait = Math.min(this.spacingMs, Math.max(0, this.lastStart + this.spacingMs - Date.now()))
    this.timer = setTimeout(() => {
      this.timer = undefined
      void this.run()
    }, wait)
  }

  private async run(): Promise<void> {
    const batch = this.queue.splice(0, this.maxItems)
    this.running = true
    this.lastStart = Date.now()
    try {
      await this.write(batch.map((waiting) => waiting.item))
      for (const waiting of batch) waiting.resolve()
    } catch (error) {
      if (batch.length === 1 || !this.split(error)) for (const waiting of batch) waiting.reject(error)
      else
        for (const waiting of batch)
          await this.write([waiting.item]).then(waiting.resolve, waiting.reject)
    } finally {
      this.running = false
      this.schedule()
    }
  }
}
