import {ApiError, type GroupSummary} from './api-client.js'
import {FastChatError} from './errors.js'
import type {ChatSession} from './session.js'
import type {KeyDirectory} from './trust.js'

/**
 * How users name groups and recipients (docs/cli.md "Groups"): a group by its
 * id or by a name unique among your groups; for `send` and `history`, where a
 * user is meant as often, `#name` forces a group, `@name` a user, and a bare
 * name that is both is refused rather than guessed.
 */

/** Whether a user has this name; a name the server refuses as a username (400) is nobody's. */
async function userExists(keys: KeyDirectory, name: string): Promise<boolean> {
  try {
    return (await keys.current(name)) !== null
  } catch (error) {
    if (error instanceof ApiError && error.status === 400) return false
    throw error
  }
}

/** A group as addressed: its id, and its name when we know it (null for an id that is not in our list). */
export interface GroupRef {
  id: string
  name: string | null
}

export type Target = {kind: 'user'; username: string} | {kind: 'group'; group: GroupRef}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

export const isGroupId = (text: string): boolean => UUID.test(text)

/** My groups (GET /v1/groups), fetched once per command and refreshed on demand. */
export class GroupDirectory {
  private list?: Promise<GroupSummary[]>
  private readonly names = new Map<string, string>()
  /** Ids looked up once more after not being found: a name is not worth a request per message. */
  private readonly refreshed = new Set<string>()

  constructor(private readonly session: ChatSession) {}

  mine(refresh = false): Promise<GroupSummary[]> {
    if (refresh || !this.list) {
      const fetched = this.session.withFailover((api) => api.groups()).then(({groups}) => {
        for (const group of groups) this.names.set(group.id, group.name)
        return groups
      })
      // A failed fetch is not remembered: the next call tries again.
      fetched.catch(() => (this.list = undefined))
      this.list = fetched
    }
    return this.list
  }

  /** The name of a group for display: from the list (fetched at most once more for an id not in it), else null. */
  async nameOf(id: string): Promise<string | null> {
    if (!this.names.has(id) && !this.refreshed.has(id)) {
      this.refreshed.add(id)
      await this.mine(this.list !== undefined)
    }
    return this.names.get(id) ?? null
  }

  /** A name learned elsewhere (group events carry one): shown for messages of a group we have left. */
  learn(id: string, name: string): void {
    if (!this.names.has(id)) this.names.set(id, name)
  }

  /** A group argument of a `group` command: an id, or a name (optionally `#name`) unique among my groups. */
  async resolve(text: string): Promise<GroupRef> {
    const raw = text.startsWith('#') ? text.slice(1) : text
    if (isGroupId(raw)) {
      const id = raw.toLowerCase()
      return {id, name: (await this.mine()).find((group) => group.id === id)?.name ?? null}
    }
    const found = await this.byName(raw)
    if (!found) {
      throw new FastChatError('FC_GROUP_NOT_FOUND', `You have no group named ${raw}.`, {name: raw})
    }
    return found
  }

  /**
   * A recipient of `send` or a peer of `history`: `@name` a user, `#name` or
   * an id a group; a bare name is a group if one of mine has it, unless a user
   * has it too (then the user must say which).
   */
  async target(text: string, keys: KeyDirectory): Promise<Target> {
    if (text.startsWith('@')) return {kind: 'user', username: text.slice(1)}
    if (text.startsWith('#') || isGroupId(text)) return {kind: 'group', group: await this.resolve(text)}
    const group = await this.byName(text)
    // The lookup is cached: `send` asks for the same key right after.
    const user = await userExists(keys, text)
    if (!group) {
      if (user) return {kind: 'user', username: text}
      throw new FastChatError('FC_USER_NOT_FOUND', `There is no user named ${text}, and none of your groups is.`, {username: text, groupsChecked: true})
    }
    if (user) {
      throw new FastChatError('FC_AMBIGUOUS_NAME', `${text} is both a user and one of your groups.`, {name: text, group: group.id})
    }
    return {kind: 'group', group}
  }

  /** The one group of mine with this name; undefined if none; an input error listing the ids if several. */
  private async byName(name: string): Promise<GroupRef | undefined> {
    const matches = (await this.mine()).filter((group) => group.name === name)
    if (matches.length > 1) {
      const ids = matches.map((g) => g.id)
      throw new FastChatError('FC_AMBIGUOUS_GROUP', `${matches.length} of your groups are named ${name}: ${ids.join(', ')}.`, {name, ids})
    }
    const [match] = matches
    return match ? {id: match.id, name: match.name} : undefined
  }
}
