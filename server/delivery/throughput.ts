/** Counts events per second over a sliding window of whole seconds, for the registry's stats. */
export class RateMeter {
  private readonly buckets: number[]
  private readonly stamps: number[]

  constructor(private readonly windowSeconds = 10) {
    this.buckets = new Array<number>(windowSeconds).fill(0)
    this.stamps = new Array<number>(windowSeconds).fill(-1)
  }

  mark(count = 1, now = Date.now()): void {
    const second = Math.floor(now / 1000)
    const slot = second % this.windowSeconds
    if (this.stamps[slot] !== second) {
      this.stamps[slot] = second
      this.buckets[slot] = 0
    }
    this.buckets[slot]! += count
  }

  /** The average rate over the last full `windowSeconds` seconds (the current one excluded). */
  perSecond(now = Date.now()): number {
    const second = Math.floor(now / 1000)
    let total = 0
    for (let i = 0; i < this.windowSeconds; i++) {
      const stamp = this.stamps[i]!
      if (stamp < second && stamp >= second - this.windowSeconds) total += this.buckets[i]!
    }
    return Math.round((total / this.windowSeconds) * 10) / 10
  }
}
