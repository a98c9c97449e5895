import {GroupKeys} from './group-keys.js'
import {GroupDirectory} from './group-targets.js'
import type {ChatSession} from './session.js'
import {KeyDirectory} from './trust.js'

/**
 * What one command learns about other people and groups, shared by its parts
 * so that each user's key, the group list and each epoch's key are fetched
 * once: users' keys (pinned in the profile), my groups, and group epoch keys
 * (in memory only).
 */
export class Directory {
  readonly keys: KeyDirectory
  readonly groups: GroupDirectory
  readonly groupKeys: GroupKeys

  constructor(readonly session: ChatSession) {
    this.keys = new KeyDirectory(session)
    this.groups = new GroupDirectory(session)
    this.groupKeys = new GroupKeys(session, this.keys)
  }
}
