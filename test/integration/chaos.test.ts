import {readFile} from 'node:fs/promises'
import {setTimeout as sleep} from 'node:timers/promises'

import {expect} from 'chai'

import {newBinding, packText} from '../../client/message-content.js'
import {encryptText} from '../../crypto/index.js'
import type {RunningSuperserver} from '../../superserver/main.js'
import {registerAndLogin, type TestUser, uniqueName} from '../helpers/api.js'
import {CliUser} from '../helpers/cli.js'
import {startTestSuperserver, testEnv, waitForHealthy} from '../helpers/cluster.js'
import {type FixtureName, loadFixtureKey} from '../helpers/keys.js'
import {listen} from '../helpers/listen.js'
import {eventually, type Started, startCli} from '../helpers/processes.js'

/*
 * Chaos: 3 chat servers, 5 senders and 5 `fastchat listen` clients exchanging
 * 1,000 messages while one server is SIGKILLed and restarted half-way. Every
 * acknowledged message must reach its recipient's client exactly once.
 *
 * The senders behave as the CLI does (one Idempotency-Key per message kept
 * across retries; on a network error or 503, ask the superserver for another
 * server), with real OpenPGP messages made beforehand, one per send; the
 * recipients are the real CLI, decrypting and verifying each message.
 */

const MESSAGES = 1_000
const SENDERS = 5
const KEYS: FixtureName[] = ['alice', 'bob', 'carol', 'mallory', 'alice']

interface Sender {
  user: TestUser
  server: string
  ciphertexts: string[]
}

describe('chaos: a chat server killed and restarted under traffic', function () {
  this.timeout(180_000)
  let superserver: RunningSuperserver
  const servers: Started[] = []

  before(async () => {
    superserver = await startTestSuperserver()
    const env = testEnv({LOG_LEVEL: 'error'})
    servers.push(...(await Promise.all([0, 1, 2].map(() => startCli(['server', '--port', '0', '--superserver', superserver.url], env)))))
    await waitForHealthy(superserver.url, servers.map((s) => s.url))
  })
  after(async () => {
    await Promise.all(servers.map((s) => s.stop('SIGTERM')))
    await superserver.close()
  })

  // Both transports: `listen` streams by default, and long-polls where streams do not get through.
  for (const transport of ['stream', 'poll'] as const)
  it(`delivers every acknowledged message exactly once, none lost, none shown twice (listeners on ${transport})`, async () => {
    const receivers = await Promise.all([...Array(SENDERS).keys()].map(async (i) => (await CliUser.create(`r${i}x`, superserver.url)).register()))
    const receiverKeys = await Promise.all(receivers.map((r) => readFile(r.file('public-key.asc'), 'utf8')))
    const senders: Sender[] = await Promise.all(
      KEYS.map(async (name, i) => {
        const key = await loadFixtureKey(name)
        const user = await registerAndLogin(servers[i % servers.length]!.url, uniqueName(`s${i}x`), name)
        // One real message per send, as the CLI makes it: each signed with its own id, bound to its recipient.
        const ciphertexts = await Promise.all(
          [...Array(MESSAGES / SENDERS).keys()].map((n) => {
            const j = (i + n) % SENDERS
            const text = packText(newBinding({user: receivers[j]!.username}), `from sender ${i} to receiver ${j} #${n}`)
            return encryptText({text, to: [receiverKeys[j]!, key.publicKey], signer: key.unlocked})
          }),
        )
        return {user, server: user.server, ciphertexts}
      }),
    )
    const listeners = receivers.map((receiver) => listen(receiver, ['--transport', transport]))
    const listening = () => listeners.map((l) => l.lines().length)
    await sleep(1_500) // every listener has unlocked its key and polls

    const acknowledged = new Map<string, number>() // message id → receiver index
    const retries = {network: 0, unavailable: 0, switched: 0}
    const sendOne = async (sender: Sender, to: number, n: number): Promise<void> => {
      const key = `${sender.user.username}-${n}`
      for (let attempt = 0; attempt < 100; attempt++) {
        try {
          const answer = await fetch(`${sender.server}/v1/messages`, {
            method: 'POST',
            headers: {...sender.user.auth, 'content-type': 'application/json', 'idempotency-key': key},
            body: JSON.stringify({to: {user: receivers[to]!.username}, kind: 'text', ciphertext: sender.ciphertexts[n]}),
            signal: AbortSignal.timeout(5_000),
          })
          if (answer.status === 201) {
            acknowledged.set(((await answer.json()) as {id: string}).id, to)
            return
          }
          expect(answer.status, `send answered ${answer.status}`).to.equal(503)
          await answer.body?.cancel()
          retries.unavailable++
        } catch (error) {
          if ((error as Error).name === 'AssertionError') throw error
          retries.network++
        }
        await sleep(100)
        const assigned = await fetch(`${superserver.url}/v1/assign`).then((r) => (r.ok ? r.json() : undefined)).catch(() => undefined)
        if (assigned && assigned.server !== sender.server) {
          sender.server = assigned.server
          retries.switched++
        }
      }
      throw new Error(`${key} was never acknowledged`)
    }

    const perSender = MESSAGES / SENDERS
    const sending = senders.map(async (sender, i) => {
      for (let n = 0; n < perSender; n++) {
        await sendOne(sender, (i + n) % receivers.length, n)
        if (n % 10 === 0) await sleep(20) // a steady stream over several seconds, not one burst
      }
    })
    await eventually(async () => acknowledged.size >= MESSAGES / 2, 'half of the messages to be acknowledged', 60_000)
    // Kill the server the most listeners are on (it has the most to lose), then bring it back on its port.
    const profiles = await Promise.all(receivers.map((r) => r.readJson('profile.json')))
    const counts = servers.map((s) => profiles.filter((p) => p.server === s.url).length)
    const victim = counts.indexOf(Math.max(...counts))
    const killedAt = acknowledged.size
    const port = new URL(servers[victim]!.url).port
    expect(await servers[victim]!.stop('SIGKILL')).to.equal('SIGKILL')
    await sleep(1_000)
    servers[victim] = await startCli(['server', '--port', port, '--superserver', superserver.url], testEnv({LOG_LEVEL: 'error'}))
    await Promise.all(sending)
    expect(acknowledged.size).to.equal(MESSAGES)

    for (const [i, listener] of listeners.entries()) {
      const expected = [...acknowledged].filter(([, to]) => to === i).map(([id]) => id)
      await eventually(
        async () => {
          const ids = new Set(listener.lines().map((line) => line.id))
          return expected.every((id) => ids.has(id))
        },
        `receiver ${i} to have its ${expected.length} messages (has ${listening()[i]})`,
        60_000,
      )
    }
    await sleep(1_000) // anything shown twice would show up by now
    const codes = await Promise.all(listeners.map((l) => l.stop()))
    for (const listener of listeners) expect(listener.transports(), 'each listener said which transport it used, and kept it').to.deep.equal([transport])
    let received = 0
    for (const [i, listener] of listeners.entries()) {
      const lines = listener.lines()
      const ids = lines.map((line) => line.id as string)
      received += ids.length
      expect(new Set(ids).size, `receiver ${i}: nothing shown twice`).to.equal(ids.length)
      expect(ids.every((id) => acknowledged.get(id) === i), `receiver ${i}: only its own acknowledged messages`).to.equal(true)
      for (const line of lines) {
        expect(line.text).to.match(new RegExp(`^from sender \\d to receiver ${i} #\\d+$`))
        expect((line.verification as {status: string}).status).to.equal('valid')
      }
      expect(listener.stderr(), `receiver ${i} stderr`).not.to.match(/error|exception|could not/i)
    }
    expect(codes).to.deep.equal(listeners.map(() => 0))
    expect(received).to.equal(MESSAGES)
    console.log(
      `      chaos: ${acknowledged.size} acknowledged (${killedAt} before the kill), ${received} received, each once; ` +
        `sender retries: ${retries.network} network errors, ${retries.unavailable} × 503, ${retries.switched} server switches`,
    )
  })
})
