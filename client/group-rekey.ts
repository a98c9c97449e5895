import {generateGroupKey, wrapGroupKey} from '../crypto/index.js'
import {ApiError, type GroupDetails} from './api-client.js'
import {FastChatError} from './errors.js'
import type {GroupKeys} from './group-keys.js'
import type {ChatSession} from './session.js'
import {KeyChangedError, type KeyDirectory, type KeyForSending} from './trust.js'

/**
 * Keys the current epoch of a group when nobody has (docs/api.md "Groups"):
 * a fresh key, wrapped for every current member to the key pinned for them,
 * uploaded once. Membership may change while we work, and another member may
 * key the epoch first; the server refuses the upload then, and we look again.
 */

/** Rounds before giving up: each one means the membership changed again meanwhile. */
export const MAX_REKEY_ROUNDS = 5
/** Members whose keys are looked up at once: enough to be quick, few enough not to flood the server. */
const KEY_LOOKUPS_AT_ONCE = 16

const RETRY_CODES = new Set(['FC_GROUP_EPOCH_STALE', 'FC_GROUP_KEYS_MISMATCH', 'FC_GROUP_ALREADY_KEYED'])

export interface KeyedGroup {
  /** The group as last seen: its current epoch is keyed. */
  group: GroupDetails
  /** This client made and uploaded the current epoch's key. */
  keyedHere: boolean
  /** Members whose keys were pinned on this occasion (first use): their fingerprints are worth comparing. */
  pinned: KeyForSending[]
}

/** Makes sure the current epoch of `groupId` is keyed (by us if need be). `known`: a fresh GET of the group, if the caller has one. */
export async function ensureKeyed(
  session: ChatSession,
  keys: KeyDirectory,
  groupKeys: GroupKeys,
  groupId: string,
  known?: GroupDetails,
): Promise<KeyedGroup> {
  const pinned: KeyForSending[] = []
  for (let round = 0; ; round++) {
    const group = round === 0 && known ? known : await session.withFailover((api) => api.group(groupId))
    if (group.keyedBy !== null) return {group, keyedHere: false, pinned}
    if (round >= MAX_REKEY_ROUNDS) {
      throw new FastChatError(
        'FC_GROUP_REKEY_FAILED',
        `The members of ${group.name} kept changing: epoch ${group.epoch} could not be keyed after ${MAX_REKEY_ROUNDS} tries.`,
        {group: group.id, epoch: group.epoch},
      )
    }
    const members = await memberKeys(session, keys, group, pinned)
    const own = await session.key()
    const key = generateGroupKey(group.id, group.epoch)
    const wrapped = await wrapGroupKey({key, members, signer: own})
    try {
      await session.withFailover((api) => api.putGroupKeys(group.id, group.epoch, wrapped))
      groupKeys.remember(key)
      const me = group.members.find((member) => session.isMe(member.username))?.username ?? session.username
      return {group: {...group, keyedBy: me}, keyedHere: true, pinned}
    } catch (error) {
      // Stale or mismatched: membership changed; already keyed: someone was quicker (or an answer lost on the way was our success).
      if (!(error instanceof ApiError && error.status === 409 && RETRY_CODES.has(error.code))) throw error
    }
  }
}

/** username → armored public key for every member: our own, and each other member's pinned key (pinned now on first use). */
async function memberKeys(session: ChatSession, keys: KeyDirectory, group: GroupDetails, pinned: KeyForSending[]): Promise<Record<string, string>> {
  const own = await session.key()
  const entries: [string, string][] = []
  const others = group.members.filter((member) => !session.isMe(member.username))
  for (let i = 0; i < others.length; i += KEY_LOOKUPS_AT_ONCE) {
    const batch = others.slice(i, i + KEY_LOOKUPS_AT_ONCE)
    const found = await Promise.all(
      batch.map(async (member) => {
        try {
          return await keys.forSending(member.username)
        } catch (error) {
          if (!(error instanceof KeyChangedError)) throw error
          throw new KeyChangedError(error.username, error.pinnedFingerprint, error.currentFingerprint, `no new key was made for ${group.name}, and nothing was sent`)
        }
      }),
    )
    for (const [index, key] of found.entries()) {
      if (key.firstUse && !pinned.some((p) => p.username === key.username)) pinned.push(key)
      entries.push([batch[index]!.username, key.publicKey])
    }
  }
  const me = group.members.find((member) => session.isMe(member.username))
  entries.push([me?.username ?? session.username, own.publicKey])
  return Object.fromEntries(entries)
}
