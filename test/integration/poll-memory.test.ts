import {readFile} from 'node:fs/promises'

import {expect} from 'chai'

import {registerAndLogin, send, type TestUser, uniqueName} from '../helpers/api.js'
import {testEnv} from '../helpers/cluster.js'
import {type Started, startCli} from '../helpers/processes.js'

/*
 * Issue 12, hole 5: a poll may ask for 1,000 events of up to 64 KiB each; 16
 * such polls at once took a server to 3.3 GiB and blocked its event loop for
 * 18 s. A poll answer is capped in bytes (FASTCHAT_POLL_MAX_BYTES, 1 MiB by
 * default; at least one event), and one user's reads are bounded in number.
 */

const KiB = 1024
const MiB = 1024 * KiB
/** The default FASTCHAT_POLL_MAX_BYTES. */
const POLL_CAP = MiB
const EVENTS = 300

/** An armored-looking ciphertext of about 60 KiB (the limit is 64 KiB), distinct per message. */
const bigCiphertext = (n: number) => `-----BEGIN PGP MESSAGE-----\n\nwcBMA${n}${'Q'.repeat(60 * KiB)}\n-----END PGP MESSAGE-----\n`

/** KiB of the process's resident set now (VmRSS) or at its peak so far (VmHWM), from /proc. */
async function memory(pid: number, field: 'VmRSS' | 'VmHWM'): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  return Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)![1]) * KiB
}

const mib = (bytes: number) => `${(bytes / MiB).toFixed(1)} MiB`

async function pollRaw(server: string, user: TestUser, since: number, clientId?: string): Promise<{status: number; text: string}> {
  const response = await fetch(`${server}/v1/events?since=${since}&timeout=0&limit=1000`, {
    headers: {...user.auth, ...(clientId ? {'x-fastchat-client': clientId} : {})},
  })
  return {status: response.status, text: await response.text()}
}

describe('hole 5: large polls cannot drive a chat server out of memory', function () {
  this.timeout(240_000)
  let filler: Started
  let reader: TestUser

  before(async () => {
    filler = await startCli(['server', '--port', '0'], testEnv())
    reader = await registerAndLogin(filler.url, uniqueName('reader'), 'bob')
    const writer = await registerAndLogin(filler.url, uniqueName('writer'), 'alice')
    let next = 0
    const worker = async () => {
      while (next < EVENTS) {
        const n = next++
        const answer = await send(writer, reader.username, bigCiphertext(n), `big-${n}`)
        if (answer.status !== 201) throw new Error(`send ${n}: ${answer.status} ${JSON.stringify(answer.body)}`)
      }
    }
    await Promise.all(Array.from({length: 8}, worker))
  })
  after(async () => {
    await filler.stop()
  })

  it('caps each answer at the byte limit plus one event, and a loop of polls gets every event once, in order', async () => {
    const seqs: number[] = []
    const sizes: number[] = []
    let since = 0
    for (let round = 0; round < EVENTS + 1; round++) {
      const {status, text} = await pollRaw(filler.url, reader, since)
      expect(status).to.equal(200)
      const body = JSON.parse(text) as {events: {seq: number; ciphertext: string}[]; next: number}
      if (body.events.length === 0) {
        expect(body.next).to.equal(since)
        break
      }
      const largestEvent = Math.max(...body.events.map((e) => Buffer.byteLength(JSON.stringify(e))))
      expect(Buffer.byteLength(text), `answer ${round}: ${body.events.length} events`).to.be.at.most(POLL_CAP + largestEvent)
      expect(body.next, '`next` is the seq of the last event returned').to.equal(body.events.at(-1)!.seq)
      sizes.push(Buffer.byteLength(text))
      seqs.push(...body.events.map((e) => e.seq))
      since = body.next
    }
    console.log(`      ${sizes.length} polls of ${mib(Math.min(...sizes))}-${mib(Math.max(...sizes))} for ${EVENTS} events of 60 KiB`)
    expect(seqs).to.deep.equal(Array.from({length: EVENTS}, (_, i) => i + 1))
  })

  it('keeps the server\'s peak RSS bounded and /healthz under 1 s while one account runs 16 such polls at once', async () => {
    // A fresh process, so its peak (VmHWM) is this test's alone.
    const server = await startCli(['server', '--port', '0'], testEnv())
    try {
      const pid = server.child.pid!
      expect((await pollRaw(server.url, reader, EVENTS - 1)).status).to.equal(200) // warm: routes, session, statements
      const baseline = await memory(pid, 'VmRSS')
      let probing = true
      let slowest = 0
      const healthStatuses = new Set<number>()
      const probe = (async () => {
        while (probing) {
          const started = performance.now()
          const answer = await fetch(`${server.url}/healthz`)
          await answer.arrayBuffer()
          healthStatuses.add(answer.status)
          slowest = Math.max(slowest, performance.now() - started)
          await new Promise((resolve) => setTimeout(resolve, 50))
        }
      })()
      const started = performance.now()
      const answers = await Promise.all(Array.from({length: 16}, (_, i) => pollRaw(server.url, reader, 0, `client-${i}`)))
      const elapsed = performance.now() - started
      probing = false
      await probe
      const peak = await memory(pid, 'VmHWM')
      console.log(
        `      16 polls of limit=1000 over ${EVENTS} × 60 KiB: answers ${mib(Math.max(...answers.map((a) => a.text.length)))} each at most, ` +
          `in ${Math.round(elapsed)} ms; RSS ${mib(baseline)} → peak ${mib(peak)} (+${mib(peak - baseline)}); slowest /healthz ${Math.round(slowest)} ms`,
      )
      for (const answer of answers) {
        expect(answer.status).to.equal(200)
        expect(JSON.parse(answer.text).events[0].seq).to.equal(1)
      }
      // 16 answers of at most ~1 MiB, each held about three times over (rows, JSON string,
      // socket buffer), with two reads in flight: ~50 MiB. Uncapped, the answers alone are 16 × 18 MiB.
      expect(peak - baseline, 'growth of the peak RSS over the baseline').to.be.below(96 * MiB)
      expect(slowest, 'slowest /healthz during the polls').to.be.below(1_000)
      expect([...healthStatuses]).to.deep.equal([200])
    } finally {
      await server.stop()
    }
  })
})
