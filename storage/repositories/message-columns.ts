import type {MessageKind} from '../entities/message.js'

/** A message as history and the event stream read it (`m` joined with its sender `su` and recipient `ru`). */
export interface MessageRow {
  id: string
  from: string
  toUser: string | null
  groupId: string | null
  kind: MessageKind
  ciphertext: string
  blobId: string | null
  epoch: number | null
  sentAt: Date
}

export const MESSAGE_COLUMNS = `m.id, su.username AS "from", ru.username AS "toUser", m.group_id AS "groupId", m.kind,
  m.ciphertext, m.blob_id AS "blobId", m.epoch, m.sent_at AS "sentAt"`
