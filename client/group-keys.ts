import {CryptoError, type GroupKey, unwrapGroupKey} from '../crypto/index.js'
import {ApiError} from './api-client.js'
import {FastChatError} from './errors.js'
import type {ChatSession} from './session.js'
import type {KeyDirectory} from './trust.js'

/**
 * Epoch keys of groups (DESIGN.md section 4), fetched and opened on demand
 * and kept in memory for the life of the command: never written to disk, so
 * a profile copied off a machine holds no group key.
 */

/** This client cannot have the key of an epoch, for a reason that retrying will not change. */
export class GroupKeyUnavailable extends FastChatError {
  /** FC_BAD_GROUP_KEY when the key is not provably from a member (a trust problem); else why we have none. */
  constructor(message: string, code = 'FC_GROUP_KEY_UNAVAILABLE', data: Record<string, unknown> = {}, options?: {cause?: unknown}) {
    super(code, message, data, options)
    this.name = 'GroupKeyUnavailable'
  }
}

const cacheKey = (group: string, epoch: number) => `${group}:${epoch}`

export class GroupKeys {
  /** Opened keys, and definitive failures (so that a batch of messages of one epoch tries once). */
  private readonly cache = new Map<string, Promise<GroupKey>>()

  constructor(
    private readonly session: ChatSession,
    private readonly keys: KeyDirectory,
  ) {}

  /** A key this client made (rekey): no need to fetch it back. */
  remember(key: GroupKey): void {
    this.cache.set(cacheKey(key.group, key.epoch), Promise.resolve(key))
  }

  /**
   * The key of `epoch`: GET my wrapped copy, check that whoever the server
   * says made it was a member of that epoch, and open it, verifying the
   * signature against that member's pinned key. Throws GroupKeyUnavailable
   * when that cannot work (not a member then, no keys, a bad signature);
   * network and server failures are thrown as they are, and not remembered.
   */
  forEpoch(group: string, epoch: number): Promise<GroupKey> {
    const id = cacheKey(group, epoch)
    let pending = this.cache.get(id)
    if (!pending) {
      pending = this.open(group, epoch)
      this.cache.set(id, pending)
      pending.catch((error: unknown) => {
        if (!(error instanceof GroupKeyUnavailable)) this.cache.delete(id)
      })
    }
    return pending
  }

  private async open(group: string, epoch: number): Promise<GroupKey> {
    if (!Number.isSafeInteger(epoch) || epoch < 1) throw new GroupKeyUnavailable(`There is no key epoch ${epoch}.`, undefined, {group, epoch})
    let wrapped
    try {
      wrapped = await this.session.withFailover((api) => api.groupKey(group, epoch))
    } catch (error) {
      if (error instanceof ApiError && error.status === 403) {
        throw new GroupKeyUnavailable(`You were not a member of this group in epoch ${epoch}.`, error.code, {group, epoch})
      }
      // Any other refusal but "log in again" or "slow down" will not change: this message only, the rest goes on.
      if (error instanceof ApiError && error.status >= 400 && error.status < 500 && error.status !== 401 && error.status !== 429) {
        throw new GroupKeyUnavailable(`Epoch ${epoch} of this group has no key for you (${error.message}).`, error.code, {group, epoch})
      }
      throw error
    }
    const maker = wrapped?.keyedBy
    if (typeof maker !== 'string' || typeof wrapped.key !== 'string' || !Array.isArray(wrapped.members)) {
      throw new GroupKeyUnavailable('The server answered with something that is not a group key.', 'FC_BAD_RESPONSE', {group, epoch})
    }
    if (wrapped.group !== group || wrapped.epoch !== epoch) {
      throw new GroupKeyUnavailable('The server answered with the key of another group or epoch.', 'FC_BAD_GROUP_KEY', {group, epoch})
    }
    if (!wrapped.members.some((member) => member.toLowerCase() === maker.toLowerCase())) {
      throw new GroupKeyUnavailable(`The key of epoch ${epoch} is said to be made by ${maker}, who was not a member of that epoch.`, 'FC_BAD_GROUP_KEY', {group, epoch, maker})
    }
    const own = await this.session.key()
    let signerPublicKey: string
    if (this.session.isMe(maker)) {
      signerPublicKey = own.publicKey
    } else {
      const signer = await this.keys.forVerifying(maker)
      if (!signer) throw new GroupKeyUnavailable(`${maker}, who made the key of epoch ${epoch}, has no key on the server.`, 'FC_BAD_GROUP_KEY', {group, epoch, maker})
      signerPublicKey = signer.publicKey
    }
    try {
      return await unwrapGroupKey({armored: wrapped.key, key: own, signerPublicKey, group, epoch})
    } catch (error) {
      if (!(error instanceof CryptoError)) throw error
      throw new GroupKeyUnavailable(`Cannot open the key of epoch ${epoch} made by ${maker}: ${error.message}`, error.code, {group, epoch, maker}, {cause: error})
    }
  }
}
