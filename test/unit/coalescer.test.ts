import {mock} from 'node:test'

import {expect} from 'chai'

import {Coalescer} from '../../server/services/coalescer.js'

/** Lets every pending promise and I/O callback run (setImmediate is not faked). */
const settle = async () => {
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve))
}

/** A write whose runs are recorded and end when the test says. */
function recordingWrite() {
  const runs: number[][] = []
  const ends: Array<(error?: Error) => void> = []
  const write = (items: number[]) =>
    new Promise<void>((resolve, reject) => {
      runs.push(items)
      ends.push((error) => (error ? reject(error) : resolve()))
    })
  return {runs, ends, write}
}

describe('coalescer (the read receipts\' appends; fake timers)', () => {
  beforeEach(() => mock.timers.enable({apis: ['setTimeout', 'Date'], now: 1_000_000}))
  afterEach(() => mock.timers.reset())

  it('runs a lone item at once, then what came during a run together, no sooner than the spacing after the last start', async () => {
    const {runs, ends, write} = recordingWrite()
    const coalescer = new Coalescer<number>(write, 200, 100, () => false)
    const settled: number[] = []
    const add = (n: number) => void coalescer.add(n).then(() => settled.push(n))

    add(1)
    mock.timers.tick(0)
    await settle()
    expect(runs).to.deep.equal([[1]])

    add(2)
    add(3)
    mock.timers.tick(50)
    ends[0]!()
    await settle()
    expect(settled).to.deep.equal([1])
    mock.timers.tick(149)
    await settle()
    expect(runs, 'still within the spacing').to.have.length(1)
    mock.timers.tick(1)
    await settle()
    expect(runs).to.deep.equal([[1], [2, 3]])
    ends[1]!()
    await settle()
    expect(settled).to.deep.equal([1, 2, 3])

    // Idle for longer than the spacing: the next item goes at once again.
    mock.timers.tick(1_000)
    add(4)
    mock.timers.tick(0)
    await settle()
    expect(runs.at(-1)).to.deep.equal([4])
    ends[2]!()
    await settle()
  })

  it('takes at most maxItems in one run and the rest in the next', async () => {
    const {runs, ends, write} = recordingWrite()
    const coalescer = new Coalescer<number>(write, 10, 2, () => false)
    const all = [1, 2, 3, 4, 5].map((n) => coalescer.add(n))
    for (let i = 0; i < 3; i++) {
      mock.timers.tick(10)
      await settle()
      ends[i]!()
      await settle()
    }
    await Promise.all(all)
    expect(runs).to.deep.equal([[1, 2], [3, 4], [5]])
  })

  it('retries the items of a failed run one by one when the failure may be one item\'s, and fails them all when not', async () => {
    const failing = new Set([2])
    const runs: number[][] = []
    const write = async (items: number[]) => {
      runs.push(items)
      if (items.some((n) => failing.has(n))) throw Object.assign(new Error('bad row'), {code: '23503'})
    }
    const split = new Coalescer<number>(write, 0, 10, (error) => (error as {code?: string}).code === '23503')
    const outcomes = Promise.all([1, 2, 3].map((n) => split.add(n).then(() => 'ok', () => 'failed')))
    mock.timers.tick(0)
    expect(await outcomes).to.deep.equal(['ok', 'failed', 'ok'])
    expect(runs).to.deep.equal([[1, 2, 3], [1], [2], [3]])

    const whole = new Coalescer<number>(write, 0, 10, () => false)
    runs.length = 0
    const all = Promise.all([1, 2].map((n) => whole.add(n).then(() => 'ok', () => 'failed')))
    mock.timers.tick(0)
    expect(await all).to.deep.equal(['failed', 'failed'])
    expect(runs).to.deep.equal([[1, 2]])
  })
})
