/**
 * What the client library throws when it refuses or fails: a stable `code`
 * (protocol/errors.ts lists them all, docs/errors.md explains them), a
 * sentence for people, and `data` for programs (the username, the path, the
 * fingerprints...). No exit codes and no hints: those are the CLI's
 * (commands/_lib/errors.ts), as a bot or the daemon answers differently.
 *
 * The message may quote a server or a peer (a name, a problem's detail): it is
 * not sanitized here, whoever shows it to a terminal does that.
 */
export class FastChatError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly data: Readonly<Record<string, unknown>> = {},
    options?: {cause?: unknown},
  ) {
    super(message, options)
    this.name = 'FastChatError'
  }
}

/** The code of anything thrown, when it has one (FastChatError, ApiError, CryptoError all do). */
export function codeOf(error: unknown): string | undefined {
  const code = (error as {code?: unknown} | null)?.code
  return typeof code === 'string' && code.startsWith('FC_') ? code : undefined
}
