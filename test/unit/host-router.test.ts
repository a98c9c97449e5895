import {expect} from 'chai'

import {HostRouter, NoWritableHostError} from '../../storage/pg-client.js'
import type {PgHost} from '../../storage/pg-hosts.js'

const hosts: PgHost[] = [
  {host: 'a', port: 5432},
  {host: 'b', port: 5432},
  {host: 'c', port: 5432},
]

/** A probe that answers from a table (true: takes writes; false: read-only; an Error: unreachable), and counts its calls. */
function probing(answers: Record<string, boolean | Error>) {
  const asked: string[] = []
  const probe = async (host: PgHost) => {
    asked.push(host.host)
    const answer = answers[host.host]!
    if (answer instanceof Error) throw answer
    return answer
  }
  return {asked, probe}
}

describe('HostRouter (storage/pg-client.ts): where a new connection goes', () => {
  it('tries the hosts in order, skipping the unreachable and the read-only, then sticks to the one that worked', async () => {
    const {asked, probe} = probing({a: new Error('ECONNREFUSED'), b: false, c: true})
    const router = new HostRouter(hosts, probe)
    expect(await router.pick()).to.equal(hosts[2])
    expect(await router.pick()).to.equal(hosts[2])
    expect(asked).to.deep.equal(['a', 'b', 'c'])
  })

  it('searches again after the host failed, starting after it and coming round to it last', async () => {
    const answers: Record<string, boolean | Error> = {a: true, b: false, c: new Error('down')}
    const {asked, probe} = probing(answers)
    const router = new HostRouter(hosts, probe)
    expect(await router.pick()).to.equal(hosts[0])
    router.failed(hosts[0]!)
    expect(await router.pick()).to.equal(hosts[0]) // b read-only, c down, a again
    expect(asked).to.deep.equal(['a', 'b', 'c', 'a'])
  })

  it('finds a standby once it is promoted', async () => {
    const answers: Record<string, boolean | Error> = {a: true, b: false, c: false}
    const {probe} = probing(answers)
    const router = new HostRouter(hosts, probe)
    expect(await router.pick()).to.equal(hosts[0])
    answers.a = new Error('ECONNREFUSED')
    router.failed(hosts[0]!)
    const error = await router.pick().catch((e: unknown) => e)
    expect(error).to.be.instanceOf(NoWritableHostError).and.have.property('code', '08001')
    answers.b = true
    expect(await router.pick()).to.equal(hosts[1])
  })

  it('runs one search for all the connections that wait for it', async () => {
    const {asked, probe} = probing({a: false, b: true, c: true})
    const router = new HostRouter(hosts, probe)
    const picked = await Promise.all([router.pick(), router.pick(), router.pick()])
    expect(picked).to.deep.equal([hosts[1], hosts[1], hosts[1]])
    expect(asked).to.deep.equal(['a', 'b'])
  })

  it('ignores a failure reported for a host it no longer uses', async () => {
    const {asked, probe} = probing({a: false, b: true, c: true})
    const router = new HostRouter(hosts, probe)
    await router.pick()
    router.failed(hosts[2]!)
    expect(await router.pick()).to.equal(hosts[1])
    expect(asked).to.deep.equal(['a', 'b'])
  })
})
