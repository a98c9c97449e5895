import {setTimeout as sleep} from 'node:timers/promises'

import {ApiError, type GroupEvent, isFailoverError, type ServerEvent} from './api-client.js'
import type {Directory} from './directory.js'
import {singleLine} from '../commands/_lib/display.js'
import {describeFailure} from '../commands/_lib/errors.js'
import {ensureKeyed} from './group-rekey.js'
import {firstUseNote} from './trust.js'

/**
 * Group events in the event stream (docs/api.md "Group events"): shown as one
 * line each, and answered when they ask for something (`group.rekey_needed`:
 * the member who changed the group left it, so a remaining member keys it).
 */

/** A group event as `inbox` and `listen` show it; `--json` prints this object. */
export interface GroupNotice {
  type: string
  /** The id this event is deduplicated by (events have no id of their own). */
  id: string
  seq: number
  group: string
  name: string
  epoch: number
  by: string | null
  users: string[]
  /** For `group.role_changed`: the new role. */
  role?: string
  /** For `group.member_removed`: the member removed themselves. */
  left?: boolean
  /** For events about a whole epoch: how many members it has (`users` lists at most 100). */
  members?: number
  /** The line printed for it. */
  summary: string
}

/** Before answering `group.rekey_needed`: every remaining member hears it at once; a random wait lets one of them go first. */
const REKEY_JITTER_MS = 500

/** Every `group.*` event the API client passed has been checked against the group event schema (protocol/events.ts). */
export const isGroupEvent = (event: ServerEvent): event is GroupEvent => event.type.startsWith('group.')

/** The notice for a group event; `isMe` turns our own name into "you". */
export function groupNotice(event: GroupEvent, isMe: (username: string) => boolean): GroupNotice {
  const {group, name, epoch, users} = event
  const by = event.by ?? null
  const notice: GroupNotice = {
    type: event.type,
    // seq is unique in our stream; type, group and epoch guard against a stream that was reset (FC_CURSOR_AHEAD).
    id: `${event.type}:${group}:${epoch}:${event.seq}`,
    seq: event.seq,
    group,
    name,
    epoch,
    by,
    users,
    ...(event.role ? {role: event.role} : {}),
    ...(event.left === true ? {left: true} : {}),
    ...(event.members !== undefined ? {members: event.members} : {}),
    summary: '',
  }
  notice.summary = summarize(notice, isMe)
  return notice
}

function summarize(notice: GroupNotice, isMe: (username: string) => boolean): string {
  const who = (user: string | null) => (user === null ? 'someone' : isMe(user) ? 'you' : singleLine(user))
  const list = (users: string[]) => (users.length === 0 ? 'nobody' : users.map(who).join(', '))
  const group = singleLine(notice.name)
  const by = who(notice.by)
  switch (notice.type) {
    case 'group.created': {
      const others = notice.users.filter((user) => user !== notice.by)
      return `${by} created ${group}${others.length > 0 ? ` with ${list(others)}` : ''}`
    }
    case 'group.member_added':
      return `${by} added ${list(notice.users)} to ${group}`
    case 'group.member_removed':
      return notice.left || (notice.by !== null && notice.users.length === 1 && notice.users[0] === notice.by)
        ? `${list(notice.users)} left ${group}`
        : `${by} removed ${list(notice.users)} from ${group}`
    case 'group.role_changed':
      return `${by} made ${list(notice.users)} ${notice.role === 'admin' ? 'an admin' : `a ${singleLine(notice.role ?? 'member')}`} of ${group}`
    case 'group.rekey_needed':
      return `${group} needs a new key (epoch ${notice.epoch})`
    case 'group.key': {
      const members = notice.members ?? notice.users.length
      return `${by} made the key of ${group} for epoch ${notice.epoch} (${members} member${members === 1 ? '' : 's'})`
    }
    default:
      return `${group}: ${singleLine(notice.type)}${notice.by ? ` by ${by}` : ''}`
  }
}

/** The human form: `* alice added dave to friends`. */
export const formatNotice = (notice: GroupNotice): string => `* ${notice.summary}`

/**
 * Answers `group.rekey_needed`: after a short random wait, if the group's
 * current epoch still has no key and we are in it, keys it. Failures are
 * reported and do not stop the caller: another member, or the next `send`,
 * keys the epoch too.
 */
export class GroupEventResponder {
  constructor(
    private readonly directory: Directory,
    private readonly notice: (line: string) => void,
  ) {}

  /** Remembers the group names events carry, for messages of groups no longer in our list. */
  learn(notices: GroupNotice[]): void {
    for (const notice of notices) this.directory.groups.learn(notice.group, notice.name)
  }

  async answer(notices: GroupNotice[]): Promise<void> {
    // The server sends rekey_needed only to the new epoch's members (its `users` lists at most 100 of them).
    const groups = new Set(notices.filter((n) => n.type === 'group.rekey_needed').map((n) => n.group))
    for (const group of groups) {
      await sleep(Math.random() * REKEY_JITTER_MS)
      try {
        const {keys, groupKeys, session} = this.directory
        const keyed = await ensureKeyed(session, keys, groupKeys, group)
        for (const key of keyed.pinned) this.notice(firstUseNote(key))
        if (keyed.keyedHere) this.notice(`Made the key of ${singleLine(keyed.group.name)} for epoch ${keyed.group.epoch}.`)
      } catch (error) {
        // Not in the group any more (removed again, or the group is gone): nothing to do.
        if (error instanceof ApiError && (error.status === 403 || error.status === 404)) continue
        const failure = describeFailure(error)
        const why = isFailoverError(error) ? 'the server could not be reached' : failure.message
        this.notice(`Notice: could not key the new epoch of group ${group}: ${why}${failure.hint ? ` Hint: ${failure.hint}` : ''}`)
      }
    }
  }
}
