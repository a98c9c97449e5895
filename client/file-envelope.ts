import {basename, extname} from 'node:path'

import {type Binding, bindingSchema} from './message-content.js'

/**
 * What is encrypted when a file is sent (DESIGN.md section 4): the file's name
 * and media type travel inside the OpenPGP message with its bytes, so the
 * server stores and sees neither.
 *
 *   [4-byte big-endian header length N][N bytes: UTF-8 JSON {name, type, size, fastchat, id, to, sentAt}][size bytes: the file]
 *
 * `fastchat`, `id`, `to` and `sentAt` bind the file to its conversation
 * (./message-content.ts); an envelope without them (an older client) is read,
 * but not verified.
 *
 * `size` must equal the number of bytes after the header: a truncated or
 * padded envelope is refused rather than saved.
 */

export interface FileHeader {
  /** The file's base name as the sender had it. Untrusted on receipt: sanitize before using it as a path. */
  name: string
  /** A media type such as `image/png`. */
  type: string
  /** Bytes of file content after the header. */
  size: number
  /** What the sender bound the file to; null in an envelope made without one. */
  binding: Binding | null
}

export class EnvelopeError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'EnvelopeError'
  }
}

const LENGTH_BYTES = 4
/** A header is a name, a type and a number; anything bigger is not ours. */
export const MAX_HEADER_BYTES = 16 * 1024
export const DEFAULT_MEDIA_TYPE = 'application/octet-stream'

const MEDIA_TYPES: Record<string, string> = {
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.gif': 'image/gif',
  '.webp': 'image/webp',
  '.pdf': 'application/pdf',
  '.txt': 'text/plain',
}

/** The media type for a file name, from its extension (case-insensitive); application/octet-stream when unknown. */
export function mediaTypeFor(name: string): string {
  return MEDIA_TYPES[extname(name).toLowerCase()] ?? DEFAULT_MEDIA_TYPE
}

/** `type/subtype`, with the characters RFC 6838 allows; anything else from a sender is replaced by the default. */
const MEDIA_TYPE = /^[a-z0-9][a-z0-9!#$&^_.+-]{0,126}\/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$/i

/**
 * Builds the envelope for `data`. `name` may be a path: only its base name is
 * kept (the sender's directories are nobody's business). `type` defaults to
 * the guess from the name.
 */
export function packEnvelope(file: {name: string; type?: string}, data: Uint8Array, binding: Binding): Uint8Array {
  const name = basename(file.name)
  const type = file.type ?? mediaTypeFor(name)
  const header = Buffer.from(JSON.stringify({name, type, size: data.byteLength, ...binding}), 'utf8')
  if (header.byteLength > MAX_HEADER_BYTES) throw new EnvelopeError(`The file name is too long (${header.byteLength} bytes of header).`)
  const envelope = new Uint8Array(LENGTH_BYTES + header.byteLength + data.byteLength)
  new DataView(envelope.buffer).setUint32(0, header.byteLength, false)
  envelope.set(header, LENGTH_BYTES)
  envelope.set(data, LENGTH_BYTES + header.byteLength)
  return envelope
}

/** Reads an envelope back; throws EnvelopeError when it is not a well-formed one. The data is a view, not a copy. */
export function unpackEnvelope(envelope: Uint8Array): {header: FileHeader; data: Uint8Array} {
  if (envelope.byteLength < LENGTH_BYTES) throw new EnvelopeError('The file envelope is truncated.')
  const headerLength = new DataView(envelope.buffer, envelope.byteOffset, envelope.byteLength).getUint32(0, false)
  if (headerLength === 0 || headerLength > MAX_HEADER_BYTES) throw new EnvelopeError(`The file envelope has a bad header length (${headerLength}).`)
  if (LENGTH_BYTES + headerLength > envelope.byteLength) throw new EnvelopeError('The file envelope is truncated.')

  let parsed: unknown
  try {
    const text = new TextDecoder('utf-8', {fatal: true}).decode(envelope.subarray(LENGTH_BYTES, LENGTH_BYTES + headerLength))
    parsed = JSON.parse(text)
  } catch {
    throw new EnvelopeError('The file envelope header is not UTF-8 JSON.')
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new EnvelopeError('The file envelope header is not an object.')
  const {name, type, size} = parsed as Record<string, unknown>
  if (typeof name !== 'string') throw new EnvelopeError('The file envelope header has no name.')
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) throw new EnvelopeError('The file envelope header has no valid size.')
  const data = envelope.subarray(LENGTH_BYTES + headerLength)
  if (data.byteLength !== size) throw new EnvelopeError(`The file envelope holds ${data.byteLength} bytes but announces ${size}.`)
  const mediaType = typeof type === 'string' && MEDIA_TYPE.test(type) ? type.toLowerCase() : DEFAULT_MEDIA_TYPE
  const bound = bindingSchema.safeParse(parsed)
  return {header: {name, type: mediaType, size, binding: bound.success ? (bound.data as Binding) : null}, data}
}
