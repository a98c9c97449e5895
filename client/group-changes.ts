import {ApiError, type ApiClient, type GroupDetails, type GroupRole, NetworkError} from './api-client.js'
import type {Directory} from './directory.js'
import {codeOf, FastChatError} from './errors.js'
import {ensureKeyed, type KeyedGroup} from './group-rekey.js'
import type {ChatSession} from './session.js'

/** What the `group` commands share: membership changes that survive a failover, then keying the new epoch. */

/** A group as the `group` commands return it with --json. */
export interface GroupState {
  id: string
  name: string
  /** The current key epoch. */
  epoch: number
  /** Who made the current epoch's key; null while it has none. */
  keyedBy: string | null
  members: {username: string; role: GroupRole}[]
  /** Invited, not members until they join. */
  invited: string[]
}

export const groupState = (group: GroupDetails): GroupState => ({
  id: group.id,
  name: group.name,
  epoch: group.epoch,
  keyedBy: group.keyedBy,
  members: group.members.map(({username, role}) => ({username, role})),
  invited: group.invited.map(({username}) => username),
})

/** `bob` or `@bob`: the `@` that forces a user elsewhere is accepted here too. */
export const userArg = (text: string): string => (text.startsWith('@') ? text.slice(1) : text)

/**
 * A membership change, failing over to another server like a send. These
 * requests carry no idempotency key, so a retry after a lost answer may be
 * refused as already done (`alreadyDone`): that counts as success (undefined).
 */
export async function changeMembership<T>(session: ChatSession, call: (api: ApiClient) => Promise<T>, alreadyDone: (error: ApiError) => boolean): Promise<T | undefined> {
  let tries = 0
  return session.withFailover(async (api) => {
    tries++
    try {
      return await call(api)
    } catch (error) {
      if (tries > 1 && error instanceof ApiError && alreadyDone(error)) return undefined
      throw error
    }
  })
}

/**
 * Creating a group cannot be recognised when repeated, so it is retried on
 * another server only when the first one surely did not get it (refused the
 * connection, or answered 503).
 */
export async function createOnce<T>(session: ChatSession, call: (api: ApiClient) => Promise<T>): Promise<T> {
  return session.withFailover(async (api) => {
    try {
      return await call(api)
    } catch (error) {
      if (error instanceof NetworkError && error.reason !== 'ECONNREFUSED') {
        throw new FastChatError('FC_NETWORK', `No answer from ${error.url} (${error.reason}): the group may or may not have been created.`, {url: error.url, reason: error.reason, outcome: 'unknown'}, {cause: error})
      }
      throw error
    }
  })
}

/**
 * Keys the new epoch after a change we made. If that fails, the change still
 * stands: say so, with the cause's code and data (FC_KEY_CHANGED, say) and
 * `rekeyPending`, the cause kept as `cause`.
 */
export async function keyAfterChange(directory: Directory, groupId: string, done: string): Promise<KeyedGroup> {
  try {
    return await ensureKeyed(directory.session, directory.keys, directory.groupKeys, groupId)
  } catch (error) {
    const cause = error instanceof FastChatError ? error.data : {}
    const message = error instanceof Error ? error.message : String(error)
    throw new FastChatError(codeOf(error) ?? 'FC_GROUP_REKEY_FAILED', `${done}, but the group's new key could not be made: ${message}`, {...cause, rekeyPending: true}, {cause: error})
  }
}

