import type {BenchUser, Http} from './http.js'

/**
 * Group set-up for the scenarios. Being named at `POST /v1/groups` is an
 * invitation (docs/api.md "Invitations"): each member joins with one request,
 * and each join starts an epoch and tells every member so far. The joins of
 * one group are serialised by the server (the group's row lock), so a few at
 * once only keep the connection pipeline busy.
 */

/**
 * Joins sent at once per group: the server runs them one after another
 * anyway, and a join waiting on the row lock counts against the statement
 * timeout, so one waits while one runs.
 */
const JOINS_AT_ONCE = 2

/** Every member accepts its invitation to `group`; returns the group's epoch after the last join. */
export async function joinAll(http: Http, group: string, members: BenchUser[]): Promise<number> {
  let epoch = 1
  let next = 0
  await Promise.all(
    Array.from({length: Math.min(JOINS_AT_ONCE, members.length)}, async () => {
      for (let i = next++; i < members.length; i = next++) {
        const member = members[i]!
        const answer = await http.call<{epoch: number}>('POST', `${member.server}/v1/groups/${group}/join`, {token: member.token})
        if (answer.status !== 200) throw new Error(`${member.username} joining ${group} answered ${answer.status}: ${JSON.stringify(answer.body)}`)
        epoch = Math.max(epoch, answer.body.epoch)
      }
    }),
  )
  return epoch
}

/** Moves each user's cursor past what is in their stream now (the joins' events), so their polls start idle. */
export async function skipToEnd(http: Http, users: BenchUser[], concurrency = 32): Promise<void> {
  let next = 0
  await Promise.all(
    Array.from({length: Math.min(concurrency, users.length)}, async () => {
      for (let i = next++; i < users.length; i = next++) {
        const user = users[i]!
        for (;;) {
          const answer = await http.call<{events: unknown[]; next: number}>('GET', `${user.server}/v1/events?since=${user.cursor}&timeout=0&limit=1000`, {token: user.token})
          if (answer.status !== 200) throw new Error(`${user.username}'s events answered ${answer.status}`)
          user.cursor = answer.body.next
          if (answer.body.events.length === 0) break
        }
      }
    }),
  )
}
