import {z} from 'zod'

/**
 * The values the HTTP API is made of (docs/api.md), defined once for the
 * server that checks what it is sent and the client that checks what it is
 * answered. Each is also what makes a field safe to print: none of them can
 * hold a control character.
 */

/** 3 to 32 characters: ASCII letters, digits, `_`, `.` and `-`, starting with a letter or digit. */
export const username = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{2,31}$/, 'must be 3-32 characters: letters, digits, _ . - (starting with a letter or digit)')

/** An account's password: checked by the server at registration, and by the client before it asks for anything else. */
export const PASSWORD_MIN_CHARS = 8
export const password = z.string().min(PASSWORD_MIN_CHARS, `must be at least ${PASSWORD_MIN_CHARS} characters`).max(1024)

/** Message, group and blob ids. */
export const uuid = z.uuid()

/** A time as the servers write it: `Date.toISOString()`, UTC. */
export const isoTime = z.iso.datetime()

/** A position in a user's event stream. */
export const seq = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER)

/** A group's key epoch: 1 for a new group, one more for each membership change. */
export const epoch = z.number().int().min(1).max(2 ** 31 - 1)

/** An OpenPGP primary key fingerprint, lowercase hex: 40 digits (v4 keys) or 64 (v6). */
export const fingerprint = z.string().regex(/^(?:[0-9a-f]{40}|[0-9a-f]{64})$/, 'must be a key fingerprint (40 or 64 lowercase hex digits)')

/** Shown to people, so no control, format or line-separator characters; need not be unique. */
export const GROUP_NAME_MAX_CHARS = 64
export const groupName = z
  .string()
  .min(1, 'must not be empty')
  .max(GROUP_NAME_MAX_CHARS, `must be at most ${GROUP_NAME_MAX_CHARS} characters`)
  .refine((value) => !/[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}]/u.test(value), 'must not contain control or format characters')

export const groupRole = z.enum(['admin', 'member'])

/** Armored ciphertext of one text message: 64 KiB, about 47 KiB of text. */
export const MAX_CIPHERTEXT_BYTES = 64 * 1024

/** An armored OpenPGP public key; a real key of two subkeys is about 1 KiB. */
export const MAX_PUBLIC_KEY_BYTES = 64 * 1024

/** A stable error code of a problem document (docs/errors.md). */
export const errorCode = z.string().regex(/^[A-Z][A-Z0-9_]{1,63}$/, 'must be an error code (FC_...)')
