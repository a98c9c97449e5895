import {errorCodes, type ServerErrorCode} from '../../protocol/errors.js'

/** The statuses a server answers errors with. */
export type ErrorStatus = (typeof errorCodes)[ServerErrorCode]['status']

/** The codes of the table answered with `status`. */
type CodeWithStatus<S extends ErrorStatus> = {[C in ServerErrorCode]: (typeof errorCodes)[C]['status'] extends S ? C : never}[ServerErrorCode]

export interface AppErrorOptions {
  /** Data for programs (e.g. `limit`, `epoch`), beside the sentence for people. */
  extensions?: Record<string, unknown>
  /** When a retry may work. */
  retryAfterSeconds?: number
  cause?: unknown
}

/**
 * What a FastChat server refuses or fails with: a stable `code` from the one
 * table (protocol/errors.ts, which gives its status, so a code that is not
 * there does not compile), a sentence for people (`message`) and data for
 * programs. Services throw these, one subclass per domain; how they look as
 * HTTP answers (title, headers, problem document) is server/http/problem.ts's
 * business alone.
 */
export class AppError<C extends ServerErrorCode = ServerErrorCode> extends Error {
  readonly status: (typeof errorCodes)[C]['status']
  readonly extensions: Readonly<Record<string, unknown>>
  readonly retryAfterSeconds?: number

  constructor(
    readonly code: C,
    detail: string,
    options: AppErrorOptions = {},
  ) {
    super(detail, options.cause === undefined ? undefined : {cause: options.cause})
    this.name = new.target.name
    this.status = errorCodes[code].status
    this.extensions = options.extensions ?? {}
    this.retryAfterSeconds = options.retryAfterSeconds
  }
}

export interface FieldIssue {
  path: string
  message: string
}

/** Input that breaks a rule, a route's schema or a service's; `errors` names each field. */
export class ValidationError extends AppError<'FC_VALIDATION'> {
  constructor(detail: string, issues: FieldIssue[] = []) {
    super('FC_VALIDATION', detail, {extensions: {errors: issues}})
  }
}

/** No, unknown, expired or revoked token, wrong credentials, or a wrong cluster secret. */
export class UnauthorizedError extends AppError<'FC_UNAUTHORIZED'> {
  constructor(detail = 'A valid bearer token is required.') {
    super('FC_UNAUTHORIZED', detail)
  }
}

/** Not now, for want of a server, a database or a free slot: retrying (elsewhere) may work. */
export class UnavailableError extends AppError<CodeWithStatus<503>> {
  constructor(code: CodeWithStatus<503>, detail: string, retryAfterSeconds: number) {
    super(code, detail, {retryAfterSeconds})
  }
}

/** AccountService. */
export class AccountError extends AppError<'FC_USERNAME_TAKEN' | 'FC_USER_NOT_FOUND'> {}

/**
 * BlockService's rule, enforced by MessageService and GroupService: what a
 * blocked user hears when they message, or try to put in a group, someone
 * who blocks them. Worded so that it does not say "blocked"; the status does
 * tell them they were refused (docs/security.md says why).
 */
export class NotAcceptedError extends AppError<'FC_NOT_ACCEPTED'> {
  constructor(users?: string[]) {
    const who = users && users.length > 1 ? 'These users do' : 'This user does'
    super('FC_NOT_ACCEPTED', `${who} not accept messages or group invitations from you.`, {extensions: users ? {users} : {}})
  }
}

/** GroupService: membership, roles and key epochs. */
export class GroupError extends AppError<
  | 'FC_GROUP_NOT_FOUND'
  | 'FC_GROUP_MEMBER_NOT_FOUND'
  | 'FC_GROUP_KEY_NOT_FOUND'
  | 'FC_NOT_GROUP_MEMBER'
  | 'FC_GROUP_ADMIN_REQUIRED'
  | 'FC_GROUP_TOO_LARGE'
  | 'FC_ALREADY_GROUP_MEMBER'
  | 'FC_ALREADY_INVITED'
  | 'FC_NOT_INVITED'
  | 'FC_LAST_ADMIN'
  | 'FC_GROUP_EPOCH_STALE'
  | 'FC_GROUP_NOT_KEYED'
  | 'FC_GROUP_KEYS_MISMATCH'
  | 'FC_GROUP_ALREADY_KEYED'
> {}

/** MessageService: sends and history. */
export class MessageError extends AppError<'FC_MESSAGE_NOT_FOUND' | 'FC_IDEMPOTENCY_KEY_REUSED'> {}

/** EventService: a `since` outside the stream; the extensions say where to go on from. */
export class CursorError extends AppError<'FC_CURSOR_AHEAD' | 'FC_CURSOR_EXPIRED'> {}

/** Files: one that is not yours to read or attach, or one past your quota. */
export class BlobError extends AppError<'FC_BLOB_NOT_FOUND' | 'FC_STORAGE_QUOTA_EXCEEDED'> {}

export class StorageQuotaExceededError extends BlobError {
  constructor(quotaBytes: number, usageBytes: number) {
    super(
      'FC_STORAGE_QUOTA_EXCEEDED',
      `This upload would take your files past your storage quota of ${quotaBytes} bytes (${usageBytes} in use); files no message references are deleted after a grace period.`,
      {extensions: {quota: quotaBytes, usage: usageBytes}},
    )
  }
}

/** DeviceService: devices (sessions) and device links. */
export class DeviceError extends AppError<'FC_DEVICE_NOT_FOUND' | 'FC_LINK_NOT_FOUND' | 'FC_LINK_USED' | 'FC_LINK_EXPIRED'> {}
