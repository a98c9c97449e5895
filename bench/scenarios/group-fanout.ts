import {performance} from 'node:perf_hooks'

import {encryptGroupText, generateGroupKey, wrapGroupKey} from '../../crypto/index.js'
import {joinAll, skipToEnd} from '../lib/groups.js'
import {Http, Pollers, sleep, until, type BenchUser} from '../lib/http.js'
import {usersOn, tooManyUsers, type Scenario} from '../lib/scenario.js'
import {median, percentiles, round, table} from '../lib/stats.js'

/**
 * 4. Group fan-out: one message to a group of 10, 100 and 1,000 members, all
 * long-polling (spread over the chat servers): time from the send until the
 * first, the median and the last member has it. Groups are made through the
 * API (POST /v1/groups, each member's join, then the current epoch's key
 * set), before the polls start: what is measured is the message, not the
 * joins (each one tells every member so far). The wrapped key is one
 * real wrapGroupKey output given to every member (the server cannot tell),
 * the message a real encryptGroupText output.
 */
export const groupFanout: Scenario = async (context) => {
  const quick = context.options.quick
  const sizes = [10, 100, 1_000]
  const repeats = quick ? 2 : 5
  const maxSize = Math.max(...sizes)
  const skip = await tooManyUsers(context, maxSize)
  if (skip) return {skipped: skip}

  const target = await context.target()
  const servers = target.serverUrls.slice(0, 2)
  // users[0] is every group's admin and sender.
  const users = await usersOn(context, 'grp', maxSize, servers)
  const admin = users[0]!
  const http = new Http(maxSize + 16)
  /** Per message id: when each member got it. */
  const receipts = new Map<string, number[]>()
  /** Per group id: members (but the admin) whose poll has seen the epoch's key, so it is waiting again. */
  const keyed = new Map<string, Set<string>>()
  const pollers = new Pollers(http, (user, events, at) => {
    for (const event of events) {
      if (event.type === 'message' && event.id) {
        // All receipts are kept: a member may have the message before the sender has its id (the 201).
        let times = receipts.get(event.id)
        if (!times) receipts.set(event.id, (times = []))
        times.push(at)
      }
      else if (event.type === 'group.key' && event.group && user !== admin) keyed.get(event.group)?.add(user.username)
    }
  })
  const rows: Array<Array<string | number>> = [['members', 'messages', '201 ms', 'first ms', 'median member ms', 'last member ms (median)', 'last member ms (max)']]
  const data = []
  try {
    const groups: {id: string; epoch: number}[] = []
    for (const size of sizes) {
      const members = users.slice(1, size)
      const group = await call<{id: string}>(http, 'POST', `${admin.server}/v1/groups`, admin, {name: `bench ${size}`, members: members.map((m) => m.username)}, 201)
      groups.push({id: group.id, epoch: await joinAll(http, group.id, members)})
    }
    await skipToEnd(http, users)
    for (const user of users) pollers.start(user)
    await sleep(500)
    for (const [index, size] of sizes.entries()) {
      const members = users.slice(1, size)
      const group = groups[index]!
      const epoch = group.epoch
      keyed.set(group.id, new Set())
      const key = generateGroupKey(group.id, epoch)
      const wrapped = (await wrapGroupKey({key, members: {bob: context.fixtures.bob.publicKey}, signer: context.fixtures.alice.unlocked})).bob!
      const keys = Object.fromEntries([admin, ...members].map((member) => [member.username, wrapped]))
      await call(http, 'PUT', `${admin.server}/v1/groups/${group.id}/keys/${epoch}`, admin, {keys}, 204)
      if (!(await until(() => keyed.get(group.id)!.size >= size - 1, 30_000))) {
        throw new Error(`only ${keyed.get(group.id)!.size} of ${size - 1} members saw the group key within 30 s`)
      }
      await sleep(100)
      const ciphertext = await encryptGroupText({text: 'Dinner at eight?', key, signer: context.fixtures.alice.unlocked})
      const lasts: number[] = []
      const runs = []
      for (let i = 0; i < repeats; i++) {
        const start = performance.now()
        const sent = await http.call<{id: string}>('POST', `${admin.server}/v1/messages`, {
          token: admin.token,
          body: JSON.stringify({to: {group: group.id}, epoch, kind: 'text', ciphertext}),
          headers: {'idempotency-key': `bench-group-${size}-${i}`},
        })
        const acked = performance.now()
        if (sent.status !== 201) throw new Error(`group send answered ${sent.status}: ${JSON.stringify(sent.body)}`)
        let times = receipts.get(sent.body.id)
        if (!times) receipts.set(sent.body.id, (times = []))
        const got = times
        await until(() => got.length >= size - 1, 30_000)
        const spread = percentiles(times.map((t) => t - start))
        runs.push({ackMs: round(acked - start), firstMs: spread.count ? round(Math.min(...times) - start) : null, medianMs: spread.p50, lastMs: spread.max, received: times.length})
        lasts.push(spread.max)
        await sleep(200)
      }
      rows.push([
        size,
        repeats,
        median(runs.map((r) => r.ackMs)),
        median(runs.map((r) => r.firstMs ?? 0)),
        median(runs.map((r) => r.medianMs)),
        median(lasts),
        round(Math.max(...lasts)),
      ])
      data.push({members: size, runs})
    }
    const incomplete = data.flatMap((d) => d.runs.filter((r) => r.received < d.members - 1).map((r) => `${d.members}: ${r.received}/${d.members - 1}`))
    const notes = [
      `members on ${servers.length} chat servers; the sender does not receive its own message, so "last member" is the last of (members - 1) receivers`,
      `incomplete deliveries: ${incomplete.length === 0 ? 'none' : incomplete.join(', ')}; poll failures: ${pollers.failures}`,
    ]
    return {text: [table(rows), ...notes].join('\n'), data: {sizes: data, servers: servers.length, pollFailures: pollers.failures.toJSON()}}
  } finally {
    await pollers.stop()
    await http.close()
  }
}

async function call<T = unknown>(http: Http, method: 'POST' | 'PUT', url: string, user: BenchUser, body: unknown, expect: number): Promise<T> {
  const answer = await http.call<T>(method, url, {token: user.token, body: JSON.stringify(body)})
  if (answer.status !== expect) throw new Error(`${method} ${url} answered ${answer.status}: ${JSON.stringify(answer.body)}`)
  return answer.body
}
