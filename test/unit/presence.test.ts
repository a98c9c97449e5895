import {expect} from 'chai'

import {formatPresence, timeAgo} from '../../commands/_lib/format.js'
import {presenceEvent, presenceQuery, PRESENCE_QUERY_MAX_USERS} from '../../protocol/presence.js'
import {eventSchema} from '../../protocol/events.js'

/** The presence shapes (protocol/presence.ts) and how the CLI shows them (commands/_lib/format.ts). */
describe('presence: shapes and display', () => {
  it('takes 1-200 valid, comma-separated names and nothing else', () => {
    expect(presenceQuery.parse({users: 'alice,Bob_1'}).users).to.deep.equal(['alice', 'Bob_1'])
    const max = Array.from({length: PRESENCE_QUERY_MAX_USERS}, (_, i) => `user${i}`).join(',')
    expect(presenceQuery.parse({users: max}).users).to.have.length(PRESENCE_QUERY_MAX_USERS)
    for (const bad of [{}, {users: ''}, {users: `${max},one`}, {users: 'a,b'}, {users: 'alice,,bob'}, {users: ['alice', 'bob']}, {users: 'alice', x: '1'}, {users: 'al ice'}]) {
      expect(presenceQuery.safeParse(bad).success, JSON.stringify(bad)).to.equal(false)
    }
  })

  it('checks presence events by their own schema: a bad one is refused, not kept as an unknown event', () => {
    const good = {seq: 3, type: 'presence', user: 'alice', presence: 'online', lastSeen: '2026-12-07T10:00:00.000Z', at: '2026-12-07T10:00:00.100Z'}
    expect(eventSchema(good).safeParse(good).success).to.equal(true)
    for (const bad of [{...good, user: 'x\u001b]0;owned\u0007'}, {...good, presence: 'away'}, {...good, lastSeen: 'yesterday'}]) {
      expect(eventSchema(bad)).to.equal(presenceEvent)
      expect(eventSchema(bad).safeParse(bad).success, JSON.stringify(bad)).to.equal(false)
    }
  })

  it('shows times for people and names sanitized', () => {
    const now = Date.parse('2026-12-07T10:00:00Z')
    expect(timeAgo('2026-12-07T09:59:30Z', now)).to.equal('just now')
    expect(timeAgo('2026-12-07T09:55:00Z', now)).to.equal('5 min ago')
    expect(timeAgo('2026-12-07T07:00:00Z', now)).to.equal('3 h ago')
    expect(timeAgo('2026-12-06T09:00:00Z', now)).to.equal('1 day ago')
    expect(timeAgo('2026-12-01T10:00:00Z', now)).to.equal('6 days ago')
    expect(timeAgo('not a time\u001b[2J', now)).to.equal('not a time\\x1b[2J')
    const notice = {type: 'presence', id: 'p', seq: 1, user: 'bob\u202e', presence: 'offline', lastSeen: null, at: null} as const
    expect(formatPresence(notice)).to.equal('bob\\u202e is offline')
  })
})
