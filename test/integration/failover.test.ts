import {expect} from 'chai'
import {Agent, request} from 'undici'

import type {RunningChatServer} from '../../server/main.js'
import type {RunningSuperserver} from '../../superserver/main.js'
import {registerAndLogin, type TestUser, uniqueName} from '../helpers/api.js'
import {CliUser} from '../helpers/cli.js'
import {CLUSTER_AUTH, startTestServer, startTestSuperserver, testEnv, waitForHealthy} from '../helpers/cluster.js'
import {listen} from '../helpers/listen.js'
import {eventually, startCli} from '../helpers/processes.js'

describe('graceful stop with many open polls', function () {
  this.timeout(60_000)
  let superserver: RunningSuperserver
  let other: RunningChatServer

  before(async () => {
    superserver = await startTestSuperserver()
    other = await startTestServer(superserver.url)
  })
  after(async () => {
    await other.close()
    await superserver.close()
  })

  it('answers 1,000 open polls on SIGTERM, and listening clients move on without an error', async () => {
    const doomed = await startCli(['server', '--port', '0', '--superserver', superserver.url], testEnv({LOG_LEVEL: 'warn', FASTCHAT_MAX_POLLS_PER_USER: '100'}))
    await waitForHealthy(superserver.url, [other.url, doomed.url])

    // Two CLI users listening on the doomed server...
    const listeners = await Promise.all(
      ['ann', 'ben'].map(async (prefix) => {
        const user = await (await CliUser.create(prefix, superserver.url)).register()
        await user.writeJson('profile.json', {...(await user.readJson('profile.json')), server: doomed.url})
        return {user, process: listen(user)}
      }),
    )
    // ...and 1,000 raw long-polls from ten more users, a hundred clients each.
    const pollers: TestUser[] = await Promise.all([...Array(10).keys()].map((i) => registerAndLogin(doomed.url, uniqueName(`p${i}x`))))
    const agent = new Agent({connections: 1_100, keepAliveTimeout: 1_000})
    const polls = [...Array(1_000).keys()].map(async (i) => {
      const user = pollers[i % pollers.length]!
      // Each poll is its own client: a client's second poll would replace its first.
      const headers = {...user.auth, 'x-fastchat-client': `poller-${i}`}
      const answer = await request(`${doomed.url}/v1/events?since=0&timeout=60000`, {headers, dispatcher: agent})
      return {status: answer.statusCode, body: (await answer.body.json()) as {events: unknown[]}}
    })
    await eventually(async () => {
      const metrics = await (await fetch(`${superserver.url}/v1/servers`, {headers: CLUSTER_AUTH})).json()
      const entry = metrics.servers.find((s: {url: string}) => s.url === doomed.url)
      // The two listeners stream (issue 14): their streams count beside the raw polls.
      return entry && entry.openPolls + (entry.openStreams ?? 0) >= 1_002
    }, 'the doomed server to report 1,002 open polls and streams', 20_000)

    const stoppedAt = Date.now()
    expect(await doomed.stop('SIGTERM')).to.equal(0)
    const answers = await Promise.all(polls)
    expect(answers.filter((answer) => answer.status === 200)).to.have.length(1_000)
    expect(answers.every((answer) => answer.body.events.length === 0)).to.equal(true)
    expect(Date.now() - stoppedAt, 'the drain did not wait for the polls to time out').to.be.lessThan(10_000)
    await agent.close()

    // The listeners carry on on the other server: a message sent now reaches them.
    const sender = await (await CliUser.create('sender', superserver.url)).register()
    const sent = await Promise.all(listeners.map(({user}) => sender.json(['send', user.username, 'after the drain'])))
    try {
      for (const {process: proc} of listeners) {
        await eventually(
          async () => proc.lines().some((line) => sent.some((s) => s.id === line.id) && line.text === 'after the drain'),
          'the listener to get the message',
          15_000,
        )
        expect(proc.stderr(), 'nothing alarming on stderr').not.to.match(/error|fail|warn|exception/i)
      }
    } finally {
      await Promise.all(listeners.map(({process: proc}) => proc.stop()))
    }
  })
})
