import {encryptGroupBytes, encryptGroupText} from '../crypto/index.js'
import {ApiError, type GroupDetails, type SendBody} from './api-client.js'
import {FastChatError} from './errors.js'
import {packEnvelope} from './file-envelope.js'
import {uploadSealed} from './file-send.js'
import type {GroupKeys} from './group-keys.js'
import {ensureKeyed} from './group-rekey.js'
import {newBinding, packText} from './message-content.js'
import type {ProgressFactory} from './progress.js'
import type {ChatSession} from './session.js'
import {assertTextFits} from './text-limit.js'
import type {KeyDirectory, KeyForSending} from './trust.js'

/**
 * Sends to a group (docs/api.md "Sending to a group"): encrypted once under
 * the current epoch's key and signed. If the epoch changes between our look
 * and the server's check (409), we look again, re-encrypt for the new epoch
 * and retry with the same idempotency key: the server stored nothing for the
 * refused try, and a try whose answer was lost is recognised.
 */

/** Tries in all; each retry means the membership changed while we were sending. */
export const MAX_GROUP_SEND_ROUNDS = 4

const RETRY_CODES = new Set(['FC_GROUP_EPOCH_STALE', 'FC_GROUP_NOT_KEYED'])

export type GroupContent =
  | {kind: 'text'; text: string}
  | {kind: 'image'; file: {name: string; type: string; data: Uint8Array}; caption?: string; progress?: ProgressFactory}

export interface GroupSent {
  id: string
  sentAt: string
  /** The group as it was when the message was accepted. */
  group: GroupDetails
  epoch: number
  /** For an image: the blob holding the encrypted file. */
  blob?: string
  /** Members whose keys were pinned because this send keyed the epoch. */
  pinned: KeyForSending[]
}

export async function sendToGroup(
  session: ChatSession,
  keys: KeyDirectory,
  groupKeys: GroupKeys,
  groupId: string,
  content: GroupContent,
): Promise<GroupSent> {
  // One id for every round: the signed message id and the idempotency key; only the epoch it is bound to changes.
  const first = newBinding({group: groupId, epoch: 0})
  const idempotencyKey = first.id
  const pinned: KeyForSending[] = []
  // An uploaded file is kept for retries in the same epoch (it is encrypted under that epoch's key).
  let upload: {epoch: number; blob: string; caption: string} | undefined
  for (let round = 1; ; round++) {
    let group = await session.withFailover((api) => api.group(groupId))
    if (group.keyedBy === null) {
      const keyed = await ensureKeyed(session, keys, groupKeys, groupId, group)
      group = keyed.group
      pinned.push(...keyed.pinned)
    }
    const key = await groupKeys.forEpoch(group.id, group.epoch)
    const signer = await session.key()
    const binding = {...first, to: {group: group.id, epoch: group.epoch}}
    let body: SendBody
    if (content.kind === 'text') {
      body = {to: {group: group.id}, epoch: group.epoch, kind: 'text', ciphertext: await encryptGroupText({text: packText(binding, content.text), key, signer})}
      assertTextFits(body.ciphertext, group.id)
    } else {
      if (upload?.epoch !== group.epoch) {
        const sealed = await encryptGroupBytes({data: packEnvelope(content.file, content.file.data, binding), key, signer})
        const caption = content.caption ? await encryptGroupText({text: packText(binding, content.caption), key, signer}) : ''
        const {blob} = await uploadSealed(session, sealed, content.file, content.progress)
        upload = {epoch: group.epoch, blob, caption}
      }
      body = {to: {group: group.id}, epoch: group.epoch, kind: 'image', blob: upload.blob, ciphertext: upload.caption}
    }
    try {
      const sent = await session.withFailover((api) => api.send(body, idempotencyKey))
      return {id: sent.id, sentAt: sent.sentAt, group, epoch: group.epoch, blob: upload?.blob, pinned}
    } catch (error) {
      if (!(error instanceof ApiError && error.status === 409 && RETRY_CODES.has(error.code))) throw error
      if (round >= MAX_GROUP_SEND_ROUNDS) {
        throw new FastChatError('FC_GROUP_REKEY_FAILED', `The members of the group kept changing while sending; nothing was sent after ${round} tries.`, {group: groupId}, {cause: error})
      }
    }
  }
}
