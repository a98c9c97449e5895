import {setTimeout as sleep} from 'node:timers/promises'

import {ApiError, type GroupEvent, isFailoverError, type ServerEvent} from './api-client.js'
import type {Directory} from './directory.js'
import {codeOf} from './errors.js'
import {ensureKeyed} from './group-rekey.js'
import type {Reporter} from './reports.js'

/**
 * Group events in the event stream (docs/api.md "Group events"): handed out
 * as data (the CLI shows one line each), and answered when they ask for something (`group.rekey_needed`:
 * the member who changed the group left it, so a remaining member keys it).
 */

/** A group event as the library hands it out (`inbox --json` prints it, with a `summary` line). */
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
}

/** Before answering `group.rekey_needed`: every remaining member hears it at once; a random wait lets one of them go first. */
const REKEY_JITTER_MS = 500

/** Every `group.*` event the API client passed has been checked against the group event schema (protocol/events.ts). */
export const isGroupEvent = (event: ServerEvent): event is GroupEvent => event.type.startsWith('group.')

/** The notice for a group event. */
export function groupNotice(event: GroupEvent): GroupNotice {
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
  }
  return notice
}

/**
 * Answers `group.rekey_needed`: after a short random wait, if the group's
 * current epoch still has no key and we are in it, keys it. Failures are
 * reported and do not stop the caller: another member, or the next `send`,
 * keys the epoch too.
 */
export class GroupEventResponder {
  constructor(
    private readonly directory: Directory,
    private readonly report: Reporter,
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
        for (const key of keyed.pinned) this.report({type: 'key.pinned', username: key.username, fingerprint: key.fingerprint})
        if (keyed.keyedHere) this.report({type: 'group.keyed', group: keyed.group.id, name: keyed.group.name, epoch: keyed.group.epoch})
      } catch (error) {
        // Not in the group any more (removed again, or the group is gone): nothing to do.
        if (error instanceof ApiError && (error.status === 403 || error.status === 404)) continue
        const message = error instanceof Error ? error.message : String(error)
        this.report({type: 'group.rekey_failed', group, code: codeOf(error), message, network: isFailoverError(error)})
      }
    }
  }
}
