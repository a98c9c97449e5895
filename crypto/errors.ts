/**
 * The one error type the crypto module throws. Callers switch on `code`
 * (stable); `message` is for people. The underlying openpgp error, when there
 * is one, is kept as `cause` for logs: its wording changes between openpgp
 * releases, so nothing should parse it.
 */
export type CryptoErrorCode = 'FC_BAD_KEY' | 'FC_BAD_PASSPHRASE' | 'FC_DECRYPT_FAILED' | 'FC_BAD_MESSAGE' | 'FC_BAD_GROUP_KEY'

export class CryptoError extends Error {
  constructor(
    readonly code: CryptoErrorCode,
    message: string,
    options: {cause?: unknown} = {},
  ) {
    super(message, options.cause === undefined ? undefined : {cause: options.cause})
    this.name = new.target.name
  }
}

/**
 * Whether `error` is a CryptoError, also one from another instance of this
 * module (a module loaded lazily may be instantiated apart from its static
 * importers', e.g. under a loader that keys modules by more than their path).
 */
export function isCryptoError(error: unknown): error is CryptoError {
  return error instanceof CryptoError || (error instanceof Error && error.name === 'CryptoError' && typeof (error as {code?: unknown}).code === 'string')
}

/** A short, single-line description of whatever was thrown, for `reason` strings. */
export function describeError(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}
