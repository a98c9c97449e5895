import {mock} from 'node:test'

import {expect} from 'chai'
import pino from 'pino'

import {Delivery, GAP_GRACE_MS, LAZY_EVENTS_MS, STREAM_DRAIN_TIMEOUT_MS, type StreamSink, type StreamSource} from '../../server/delivery/delivery.js'
import {RECHECK_GRACE_MS} from '../../server/delivery/recheck.js'
import {MAILBOX_KEEP_MS} from '../../server/delivery/registry.js'
import type {WireEvent} from '../../server/delivery/listener.js'
import type {CommittedMessage} from '../../server/delivery/views.js'
import type {EventRow, StreamRead} from '../../storage/repositories/event-stream.repository.js'

/**
 * The delivery state machine (server/delivery/) on its own: park, wake,
 * answer from memory or read, supersede, skip-read, streams, and the
 * re-check as the fallback for a lost push, with fake timers (node:test's)
 * instead of waiting. The stream it reads is an in-memory one here; the
 * integration suites run the same code against PostgreSQL.
 */

/** An event stream in memory that counts its reads. */
class MemoryStream implements StreamSource {
  readonly streams = new Map<string, EventRow[]>()
  reads = 0

  append(userId: string, count = 1, type = 'note'): bigint {
    let rows = this.streams.get(userId)
    if (!rows) this.streams.set(userId, (rows = []))
    for (let i = 0; i < count; i++) {
      rows.push({seq: String(rows.length + 1), type, payload: {n: rows.length + 1}, at: new Date(0)})
    }
    return BigInt(rows.length)
  }

  async read(userId: string, since: bigint, limit: number): Promise<StreamRead> {
    this.reads++
    const rows = this.streams.get(userId) ?? []
    return {lastSeq: BigInt(rows.length), prunedThrough: 0n, events: rows.filter((row) => BigInt(row.seq) > since).slice(0, limit)}
  }

  async heads(userIds: string[]): Promise<Map<string, bigint>> {
    return new Map(userIds.map((id) => [id, BigInt(this.streams.get(id)?.length ?? 0)]))
  }
}

/** A message committed for `userId` at `seq`, as MessageService hands it over. */
const committed = (userId: string, seq: bigint): CommittedMessage => ({
  view: {id: `00000000-0000-4000-8000-${String(seq).padStart(12, '0')}`, from: 'alice', to: {user: 'bob'}, kind: 'text', ciphertext: 'x', sentAt: new Date(0).toISOString()},
  to: [{recipientId: userId, seq}],
})

class RecordingSink implements StreamSink {
  opened: bigint | undefined
  written: WireEvent[] = []
  heartbeats = 0
  ended: unknown = 'open'
  backlogged = false
  private drainers: ((ok: boolean) => void)[] = []
  drained(timeoutMs: number): Promise<boolean> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs)
      this.drainers.push((ok) => (clearTimeout(timer), resolve(ok)))
    })
  }
  /** The client took what was written. */
  drain(): void {
    this.backlogged = false
    for (const resolve of this.drainers.splice(0)) resolve(true)
  }
  open(next: bigint): void {
    this.opened = next
  }
  write(events: WireEvent[]): void {
    this.written.push(...events)
  }
  heartbeat(): void {
    this.heartbeats++
  }
  end(reason?: unknown): void {
    this.ended = reason ?? 'closed'
  }
  get seqs(): number[] {
    return this.written.map((event) => Number(event.seq))
  }
}

/** Lets every pending promise and I/O callback run (setImmediate is not faked). */
const settle = async () => {
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve))
}

describe('delivery state machine (fake timers)', () => {
  let stream: MemoryStream
  let delivery: Delivery
  let aborts: AbortController

  beforeEach(() => {
    mock.timers.enable({apis: ['setTimeout', 'setInterval', 'Date'], now: 1_000_000})
    stream = new MemoryStream()
    delivery = new Delivery({stream, logger: pino({level: 'silent'})}, {maxPerUser: 3, heartbeatMs: 15_000, recheckMs: 500})
    aborts = new AbortController()
  })
  afterEach(async () => {
    aborts.abort()
    await delivery.drain()
    await delivery.stop()
    mock.timers.reset()
  })

  const poll = (since: bigint, timeoutMs = 30_000, client?: string, userId = '1') =>
    delivery.poll(userId, {since, timeoutMs, limit: 100}, aborts.signal, client)

  it('parks a poll with nothing to answer and answers it empty at its timeout, cursor unchanged', async () => {
    let answer: Awaited<ReturnType<typeof poll>> | undefined
    void poll(0n, 30_000).then((result) => (answer = result))
    await settle()
    expect(stream.reads).to.equal(1)
    expect(delivery.openPolls).to.equal(1)
    mock.timers.tick(29_999)
    await settle()
    expect(answer).to.equal(undefined)
    mock.timers.tick(1)
    await settle()
    expect(answer).to.deep.equal({events: [], next: 0n})
    expect(delivery.openPolls).to.equal(0)
  })

  it('answers a parked poll from what a commit handed over, without reading', async () => {
    const answer = poll(0n)
    await settle()
    expect(stream.reads).to.equal(1)
    const seq = stream.append('1')
    delivery.deliver([committed('1', seq)])
    const result = await answer
    expect(result.next).to.equal(1n)
    expect(JSON.parse(result.events[0]!.json)).to.include({seq: 1, type: 'message', from: 'alice'})
    expect(stream.reads, 'no read after the handover').to.equal(1)
    expect(delivery.answers.fromMemory).to.equal(1)
  })

  it('reads instead when what was handed over does not continue its cursor (a gap)', async () => {
    stream.append('1', 2) // seq 1 and 2 committed; only 2 is handed over (1's push was lost)
    const answer = poll(0n, 30_000)
    // The first read finds both at once; park a fresh poll at 0 on another user to see the gap rule.
    expect((await answer).events.map((event) => Number(event.seq))).to.deep.equal([1, 2])
    const parked = poll(0n, 30_000, undefined, '2')
    await settle()
    const readsBefore = stream.reads
    stream.append('2', 2)
    delivery.deliver([committed('2', 2n)])
    await settle()
    expect(stream.reads, 'it waits a moment for the missing event first').to.equal(readsBefore)
    mock.timers.tick(GAP_GRACE_MS)
    const result = await parked
    expect(result.events.map((event) => Number(event.seq))).to.deep.equal([1, 2])
    expect(stream.reads).to.equal(readsBefore + 1)
    expect(delivery.gapReads).to.equal(1)
  })

  it('answers from memory when the missing event of a gap arrives within the grace (two commits resolving out of order)', async () => {
    const parked = poll(0n)
    await settle()
    const reads = stream.reads
    stream.append('1', 2)
    delivery.deliver([committed('1', 2n)])
    await settle()
    delivery.deliver([committed('1', 1n)])
    const result = await parked
    expect(result.events.map((event) => Number(event.seq))).to.deep.equal([1, 2])
    expect(stream.reads, 'no read: both came from memory').to.equal(reads)
    expect(delivery.gapReads).to.equal(0)
  })

  it('wakes a parked poll on news it must read (a group change) and reads it', async () => {
    const answer = poll(0n)
    await settle()
    stream.append('1')
    delivery.announce(['1'])
    expect((await answer).next).to.equal(1n)
    expect(stream.reads).to.equal(2)
  })

  it('skips the read of a poll that follows one answered at the head, until news arrives', async () => {
    stream.append('1')
    expect((await poll(0n)).next).to.equal(1n)
    expect(stream.reads).to.equal(1)
    // Same cursor, nothing heard since: parks without reading.
    const second = poll(1n)
    await settle()
    expect(stream.reads).to.equal(1)
    stream.append('1')
    delivery.announce(['1'])
    expect((await second).next).to.equal(2n)
    expect(stream.reads).to.equal(2)
    // A poll that will not wait always reads.
    await poll(2n, 0)
    expect(stream.reads).to.equal(3)
  })

  it('keeps a message committed between two polls for the next one, which answers it from memory (mailbox)', async () => {
    stream.append('1')
    expect((await poll(0n)).next).to.equal(1n)
    const reads = stream.reads
    // No poll open here: the message is kept, not only counted.
    delivery.deliver([committed('1', stream.append('1'))])
    const next = await poll(1n)
    expect(next.events.map((event) => Number(event.seq))).to.deep.equal([2])
    expect(stream.reads, 'taken from the mailbox, no read').to.equal(reads)
    // And the one after skips its read as usual.
    const third = poll(2n)
    await settle()
    expect(stream.reads).to.equal(reads)
    delivery.deliver([committed('1', stream.append('1'))])
    expect((await third).next).to.equal(3n)
  })

  it('leaves what was handed over during its read for the next poll, which takes it from memory instead of reading it back', async () => {
    stream.append('1')
    // A commit lands while the first poll reads: the read ends at 1, the commit is handed to the poll, which answers with 1.
    const read = stream.read.bind(stream)
    stream.read = async (userId, since, limit) => {
      const answer = await read(userId, since, limit)
      stream.read = read
      delivery.deliver([committed('1', stream.append('1'))])
      return answer
    }
    expect((await poll(0n)).events.map((event) => Number(event.seq))).to.deep.equal([1])
    const reads = stream.reads
    const next = await poll(1n)
    expect(next.events.map((event) => Number(event.seq))).to.deep.equal([2])
    expect(stream.reads, 'kept for it, no read (it was dropped, and read back)').to.equal(reads)
  })

  it('lets a second client at the same cursor read what the first took from the mailbox, instead of waiting for it', async () => {
    stream.append('1')
    expect((await poll(0n, 30_000, 'laptop')).next).to.equal(1n)
    delivery.deliver([committed('1', stream.append('1'))])
    expect((await poll(1n, 30_000, 'laptop')).next, 'the laptop takes the mailbox').to.equal(2n)
    const reads = stream.reads
    const desktop = await poll(1n, 30_000, 'desktop')
    expect(desktop.next, 'the desktop reads it').to.equal(2n)
    expect(stream.reads).to.equal(reads + 1)
  })

  it('drops a mailbox nobody came for within MAILBOX_KEEP_MS, or that a wake-up overtook: the next poll reads everything', async () => {
    stream.append('1')
    expect((await poll(0n)).next).to.equal(1n)
    delivery.deliver([committed('1', stream.append('1'))])
    mock.timers.tick(MAILBOX_KEEP_MS)
    let reads = stream.reads
    expect((await poll(1n)).next).to.equal(2n)
    expect(stream.reads, 'expired: read').to.equal(reads + 1)

    // A message kept, then news that is not handed over (a group change): the box is void, the poll reads both.
    delivery.deliver([committed('1', stream.append('1'))])
    stream.append('1')
    delivery.announce(['1'])
    reads = stream.reads
    const answer = await poll(2n)
    expect(answer.events.map((event) => Number(event.seq))).to.deep.equal([3, 4])
    expect(stream.reads).to.equal(reads + 1)
  })

  it('keeps nothing between polls with mailboxes off (FASTCHAT_MAILBOX_MS=0): the next poll reads', async () => {
    const off = new Delivery({stream, logger: pino({level: 'silent'})}, {mailboxMs: 0})
    const pollOff = (since: bigint) => off.poll('1', {since, timeoutMs: 30_000, limit: 100}, aborts.signal)
    stream.append('1')
    expect((await pollOff(0n)).next).to.equal(1n)
    off.deliver([committed('1', stream.append('1'))])
    const reads = stream.reads
    expect((await pollOff(1n)).next).to.equal(2n)
    expect(stream.reads).to.equal(reads + 1)
    await off.drain()
    await off.stop()
  })

  it('keeps no mailbox for a user who has not polled here lately (they listen elsewhere, or nowhere)', async () => {
    delivery.deliver([committed('2', stream.append('2'))])
    const reads = stream.reads
    expect((await poll(0n, 30_000, undefined, '2')).next).to.equal(1n)
    expect(stream.reads, 'read: nothing was kept').to.equal(reads + 1)
  })

  it('answers a poll replaced by a newer one of the same client at once, and the oldest beyond the per-user cap', async () => {
    const first = poll(0n, 30_000, 'laptop')
    await settle()
    const second = poll(0n, 30_000, 'laptop')
    expect(await first).to.deep.equal({events: [], next: 0n})
    const others = [poll(0n, 30_000, 'x'), poll(0n, 30_000, 'y')]
    await settle()
    expect(delivery.openPolls).to.equal(3)
    const fourth = poll(0n, 30_000, 'z')
    expect(await second, 'the oldest gives way').to.deep.equal({events: [], next: 0n})
    delivery.deliver([committed('1', stream.append('1'))])
    for (const answer of [...others, fourth]) expect((await answer).next).to.equal(1n)
  })

  it('finds a lost push by the re-check: a parked poll whose stream moved wakes within one interval and its grace', async () => {
    delivery.start()
    const answer = poll(0n)
    await settle()
    stream.append('1') // committed elsewhere; the push never came
    mock.timers.tick(500)
    await settle()
    mock.timers.tick(RECHECK_GRACE_MS - 1)
    await settle()
    expect(delivery.recovered, 'not within the grace').to.equal(0)
    mock.timers.tick(1)
    await settle()
    expect((await answer).next).to.equal(1n)
    expect(delivery.recovered).to.equal(1)
  })

  it('lets the re-check wake nobody whose news arrives from memory within its grace (a commit on its way)', async () => {
    delivery.start()
    const answer = poll(0n)
    await settle()
    const seq = stream.append('1') // committed; its hand-over comes a moment later
    mock.timers.tick(500)
    await settle()
    delivery.deliver([committed('1', seq)])
    await settle()
    expect((await answer).next).to.equal(1n)
    mock.timers.tick(RECHECK_GRACE_MS)
    await settle()
    expect(delivery.recovered).to.equal(0)
  })

  it('streams: writes the backlog, then each commit from memory, a heartbeat after 15 s of silence, and ends when replaced', async () => {
    stream.append('1', 2)
    const sink = new RecordingSink()
    const running = delivery.stream('1', {since: 0n, limit: 100}, sink, aborts.signal, 'laptop')
    await settle()
    expect(sink.opened).to.equal(0n)
    expect(sink.seqs).to.deep.equal([1, 2])
    const reads = stream.reads
    delivery.deliver([committed('1', stream.append('1'))])
    await settle()
    expect(sink.seqs).to.deep.equal([1, 2, 3])
    expect(stream.reads, 'written from memory').to.equal(reads)
    mock.timers.tick(14_999)
    await settle()
    expect(sink.heartbeats).to.equal(0)
    mock.timers.tick(1)
    await settle()
    expect(sink.heartbeats).to.equal(1)
    expect(delivery.openStreams).to.equal(1)
    void poll(0n, 30_000, 'laptop')
    await running
    expect(sink.ended).to.deep.equal({event: 'superseded'})
    expect(delivery.openStreams).to.equal(0)
  })

  it('resumes a stream from a cursor, reading what it missed, and ends it with FC_DRAINING on drain', async () => {
    stream.append('1', 5)
    const sink = new RecordingSink()
    const running = delivery.stream('1', {since: 3n, limit: 100}, sink, aborts.signal)
    await settle()
    expect(sink.opened).to.equal(3n)
    expect(sink.seqs).to.deep.equal([4, 5])
    // A handover past a gap (6 lost, 7 handed over) makes it read, and it writes both.
    stream.append('1', 2)
    delivery.deliver([committed('1', 7n)])
    await settle()
    mock.timers.tick(GAP_GRACE_MS)
    await settle()
    expect(sink.seqs).to.deep.equal([4, 5, 6, 7])
    await delivery.drain()
    await running
    expect(sink.ended).to.have.property('event', 'problem')
    expect((sink.ended as {problem: {code: string}}).problem.code).to.equal('FC_DRAINING')
  })

  it('lets a receipt handed over past a gap wait for the missing message without the grace: no read when it comes late', async () => {
    const sink = new RecordingSink()
    void delivery.stream('1', {since: 0n, limit: 100}, sink, aborts.signal)
    await settle()
    const reads = stream.reads
    stream.append('1') // seq 1, a message committed here
    stream.append('1') // seq 2, a message whose push from a peer is on its way
    const receipt = stream.append('1', 1, 'receipt.read') // seq 3, a receipt appended here
    delivery.deliverEvents([{recipientId: '1', seq: String(receipt), type: 'receipt.read', payload: {receipts: []}, at: new Date(0)}])
    delivery.deliver([committed('1', 1n)])
    await settle()
    expect(sink.seqs).to.deep.equal([1])
    // Only the receipt is past the gap: it waits for seq 2 without the gap's grace, however long the push takes.
    mock.timers.tick(GAP_GRACE_MS * 4)
    await settle()
    expect(stream.reads, 'no read').to.equal(reads)
    delivery.deliver([committed('1', 2n)])
    await settle()
    expect(sink.seqs).to.deep.equal([1, 2, 3])
    expect(delivery.gapReads).to.equal(0)

    // A push that never comes: past the receipt's lazy delay (or the re-check) the stream reads, and writes both.
    stream.append('1') // seq 4, lost
    const next = stream.append('1', 1, 'receipt.read') // seq 5
    delivery.deliverEvents([{recipientId: '1', seq: String(next), type: 'receipt.read', payload: {receipts: []}, at: new Date(0)}])
    await settle()
    for (let waited = 0; sink.seqs.length < 5 && waited <= LAZY_EVENTS_MS + 2 * GAP_GRACE_MS; waited += GAP_GRACE_MS) {
      mock.timers.tick(GAP_GRACE_MS)
      await settle()
    }
    expect(sink.seqs).to.deep.equal([1, 2, 3, 4, 5])
    expect(stream.reads).to.be.greaterThan(reads)
  })

  it('refuses to open a stream at a cursor ahead of the stream (nothing written)', async () => {
    const sink = new RecordingSink()
    let failure: unknown
    await delivery.stream('1', {since: 9n, limit: 100}, sink, aborts.signal).catch((error: unknown) => (failure = error))
    expect(failure).to.have.property('code', 'FC_CURSOR_AHEAD')
    expect(sink.opened).to.equal(undefined)
  })

  it('writes no more while its client has a page unread, goes on when it has taken it, and ends one that takes nothing for 30 s', async () => {
    const sink = new RecordingSink()
    const running = delivery.stream('1', {since: 0n, limit: 100}, sink, aborts.signal)
    await settle()
    sink.backlogged = true
    delivery.deliver([committed('1', stream.append('1'))])
    await settle()
    expect(sink.seqs, 'held while the client is behind').to.deep.equal([])
    sink.drain()
    await settle()
    expect(sink.seqs).to.deep.equal([1])
    sink.backlogged = true
    delivery.deliver([committed('1', stream.append('1'))])
    await settle()
    mock.timers.tick(STREAM_DRAIN_TIMEOUT_MS - 1)
    await settle()
    expect(sink.ended).to.equal('open')
    mock.timers.tick(1)
    await running
    expect(sink.ended).to.equal('closed')
  })

  it('holds a receipt a parked poll or a stream is handed until the next message, or answers it alone after the lazy delay; a read of receipts alone holds them too', async () => {
    const receipt = (userId: string) => {
      const seq = stream.append(userId, 1, 'receipt.delivered')
      delivery.deliverEvents([{recipientId: userId, seq: String(seq), type: 'receipt.delivered', payload: {receipts: []}, at: new Date(0)}])
      return seq
    }
    let answer: Awaited<ReturnType<typeof poll>> | undefined
    void poll(0n).then((result) => (answer = result))
    await settle()
    receipt('1')
    mock.timers.tick(LAZY_EVENTS_MS - 1)
    await settle()
    expect(answer, 'a receipt alone waits').to.equal(undefined)
    delivery.deliver([committed('1', stream.append('1'))])
    await settle()
    expect(answer!.events.map((event) => event.type)).to.deep.equal(['receipt.delivered', 'message'])
    const readsAfterFirst = stream.reads

    // Alone: answered when the delay is up, from memory; the re-check meanwhile does not take it for missed news.
    answer = undefined
    void poll(2n).then((result) => (answer = result))
    await settle()
    receipt('1')
    mock.timers.tick(LAZY_EVENTS_MS - 1)
    await settle()
    expect(answer).to.equal(undefined)
    mock.timers.tick(1)
    await settle()
    expect(answer!.events.map((event) => Number(event.seq))).to.deep.equal([3])
    expect(delivery.recovered, 'the re-check woke nothing').to.equal(0)

    // A poll that reads only receipts (a peer said there is news, with no poll open here) holds them as well.
    stream.append('1', 1, 'receipt.delivered')
    delivery.fromPeer(['1'], [])
    answer = undefined
    void poll(3n).then((result) => (answer = result))
    await settle()
    expect(stream.reads).to.be.greaterThan(readsAfterFirst)
    expect(answer, 'read, then held').to.equal(undefined)
    mock.timers.tick(LAZY_EVENTS_MS)
    await settle()
    expect(answer!.events.map((event) => Number(event.seq))).to.deep.equal([4])

    // Between two polls: kept for the next one, which parks with it without a read (the skip-read rule holds).
    receipt('1')
    const reads = stream.reads
    answer = undefined
    void poll(4n).then((result) => (answer = result))
    await settle()
    expect(stream.reads, 'no read for a receipt kept between polls').to.equal(reads)
    expect(answer).to.equal(undefined)
    delivery.deliver([committed('1', stream.append('1'))])
    await settle()
    expect(answer!.events.map((event) => Number(event.seq))).to.deep.equal([5, 6])
    expect(stream.reads).to.equal(reads)

    // A stream holds them as well: written with the next message, or alone when the delay is up; the re-check
    // meanwhile does not take them for missed news.
    const sink = new RecordingSink()
    const running = delivery.stream('1', {since: 6n, limit: 100}, sink, aborts.signal)
    await settle()
    receipt('1')
    await settle()
    expect(sink.seqs, 'a receipt alone waits').to.deep.equal([])
    delivery.deliver([committed('1', stream.append('1'))])
    await settle()
    expect(sink.seqs).to.deep.equal([7, 8])
    receipt('1')
    mock.timers.tick(LAZY_EVENTS_MS - 1)
    await settle()
    expect(sink.seqs).to.deep.equal([7, 8])
    mock.timers.tick(1)
    await settle()
    expect(sink.seqs).to.deep.equal([7, 8, 9])
    expect(delivery.recovered, 'the re-check woke nothing').to.equal(0)
    aborts.abort()
    mock.timers.tick(15_000)
    await running
  })
})
