import type {EventRow} from '../../storage/repositories/event-stream.repository.js'
import {type MessageView, messageView} from '../services/messages.js'
import type {WireEvent} from './listener.js'

/**
 * What an event costs an answer's byte cap besides its ciphertext or payload
 * (seq, ids, names, times): the same figure the stream's read uses.
 */
export const EVENT_ENVELOPE_BYTES = 256

/**
 * An event read from the stream (or just appended), as it goes on the wire.
 * An appended event whose payload's JSON was made already (`payloadJson`,
 * an object's) is spliced in rather than made again: byte for byte the same.
 */
export function wireEventOfRow(row: EventRow & {payloadJson?: string}): WireEvent {
  const seq = BigInt(row.seq)
  if (row.type === 'message' && row.id) {
    const view = messageView(row as Required<EventRow>)
    return {seq, type: 'message', json: JSON.stringify({seq: Number(seq), type: 'message', ...view}), bytes: EVENT_ENVELOPE_BYTES + view.ciphertext.length}
  }
  const at = new Date(row.at).toISOString()
  const payload = row.payload ?? {}
  // Spliced only when it cannot repeat a member of the envelope (JSON with a key twice is for nobody to guess at).
  const members = row.payloadJson?.startsWith('{') && !('seq' in payload || 'type' in payload || 'at' in payload) ? row.payloadJson.slice(1, -1) : undefined
  const json =
    members !== undefined
      ? `{"seq":${seq},"type":${JSON.stringify(row.type)},${members}${members === '' ? '' : ','}"at":"${at}"}`
      : JSON.stringify({seq: Number(seq), type: row.type, ...payload, at})
  return {seq, type: row.type, json, bytes: EVENT_ENVELOPE_BYTES + json.length}
}

/**
 * A message just committed, with the seq it got in each recipient's stream:
 * what the accepting server hands its own listeners, and pushes to its peers,
 * instead of having them read it back.
 */
export interface CommittedMessage {
  view: MessageView
  to: {recipientId: string; seq: bigint}[]
}

/**
 * The wire events of committed messages, by recipient. The view's JSON is
 * made once per message: each recipient's copy differs only in its seq, put
 * in front of it (so it is byte for byte what a read of the stream answers).
 */
export function wireEventsOf(messages: CommittedMessage[]): Map<string, WireEvent[]> {
  const byUser = new Map<string, WireEvent[]>()
  for (const {view, to} of messages) {
    const rest = JSON.stringify({type: 'message', ...view}).slice(1)
    const bytes = EVENT_ENVELOPE_BYTES + view.ciphertext.length
    for (const {recipientId, seq} of to) {
      let list = byUser.get(recipientId)
      if (!list) byUser.set(recipientId, (list = []))
      list.push({seq, type: 'message', json: `{"seq":${seq},${rest}`, bytes})
    }
  }
  return byUser
}
