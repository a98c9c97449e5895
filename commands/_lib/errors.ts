import {Errors} from '@oclif/core'

import {CryptoError} from '../../crypto/index.js'
import {ApiError, NetworkError, ProtocolError} from '../../client/api-client.js'
import {singleLine} from './display.js'

/** The exit code tells scripts the cause (DESIGN.md section 6; signal-cli does the same). */
export const Exit = {
  /** Bad usage or input: a missing argument, an unknown user, no profile, a wrong password. */
  input: 1,
  /** A bug, or something we did not foresee. */
  unexpected: 2,
  /** The server or the network failed: retrying later may work. */
  network: 3,
  /** A key is untrusted or has changed: a person has to look at fingerprints. */
  trust: 4,
  /** HTTP 429. */
  rateLimited: 5,
} as const
export type ExitCode = (typeof Exit)[keyof typeof Exit]

/** An error meant for the user: one line, an optional hint, and the exit code. */
export class CliFailure extends Error {
  constructor(
    message: string,
    readonly exit: ExitCode,
    readonly hint?: string,
    readonly code?: string,
  ) {
    super(message)
    this.name = 'CliFailure'
  }
}

export interface Failure {
  message: string
  hint?: string
  exit: number
  code?: string
}

const oneLine = (text: string) => text.replace(/\s*\n\s*/g, ' ').trim()

/**
 * Turns anything thrown by a command into what the user sees. The message and
 * hint may carry a server's words (a problem's detail) or a peer's (a name):
 * they come out through singleLine, one line with nothing that drives a terminal.
 */
export function describeFailure(error: unknown, command?: string): Failure {
  const failure = describe(error, command)
  return {...failure, message: singleLine(failure.message), ...(failure.hint === undefined ? {} : {hint: singleLine(failure.hint)})}
}

function describe(error: unknown, command?: string): Failure {
  if (error instanceof CliFailure) return {message: error.message, hint: error.hint, exit: error.exit, code: error.code}
  if (error instanceof ApiError) return fromApiError(error)
  if (error instanceof NetworkError) {
    return {message: error.message, hint: 'Check that the server is running (`fastchat up` starts a local cluster), then retry.', exit: Exit.network, code: 'FC_NETWORK'}
  }
  if (error instanceof ProtocolError) {
    return {
      message: error.message,
      hint: 'The server is misconfigured, out of date or not to be trusted; retry later, or ask its operator.',
      exit: Exit.network,
      code: error.code,
    }
  }
  if (error instanceof CryptoError) return fromCryptoError(error)
  if (error instanceof Errors.CLIError) {
    // this.error(...) in a command, or a parse error from oclif (which has `parse`).
    const exit = 'parse' in error ? Exit.input : (error.oclif.exit ?? Exit.unexpected)
    const help = command ? `fastchat ${command.replaceAll(':', ' ')} --help` : 'fastchat help'
    const hint = error.suggestions?.[0] ?? ('parse' in error ? `See \`${help}\`.` : undefined)
    return {message: oneLine(error.message.replace(/See more help with --help/, '')), hint, exit, code: error.code}
  }
  const message = error instanceof Error ? error.message : String(error)
  return {message: `Unexpected error: ${oneLine(message)}`, hint: 'Run again with DEBUG=1 for details, and report it if it persists.', exit: Exit.unexpected}
}

/** The server's group problems in the CLI's words: its detail may name ids the user never typed. */
const GROUP_PROBLEMS = new Map<string, {message: string; hint: string}>([
  ['FC_NOT_GROUP_MEMBER', {message: 'You are not a member of that group.', hint: '`fastchat group list` lists your groups.'}],
  ['FC_GROUP_NOT_FOUND', {message: 'There is no such group, or you are not in it.', hint: '`fastchat group list` lists your groups.'}],
  ['FC_GROUP_ADMIN_REQUIRED', {message: 'Only an admin of the group can do that.', hint: '`fastchat group show <group>` lists its admins.'}],
])

function fromApiError(error: ApiError): Failure {
  // A server's own words: newlines are escaped by describeFailure, not joined, so they cannot pass for our text.
  const base = {message: error.message, code: error.code}
  if (error.status === 429) return {...base, exit: Exit.rateLimited, hint: 'You are sending too fast; wait a little and retry.'}
  if (error.status === 401) {
    return {...base, message: 'The server did not accept your session (expired, revoked or never logged in).', exit: Exit.input, hint: 'Run `fastchat login <username>`.'}
  }
  if (error.status === 404 && error.code === 'FC_USER_NOT_FOUND') return {...base, exit: Exit.input, hint: 'Check the spelling of the username.'}
  const group = GROUP_PROBLEMS.get(error.code)
  if (group) return {...base, ...group, exit: Exit.input}
  if (error.status >= 400 && error.status < 500) return {...base, exit: Exit.input}
  return {...base, exit: Exit.network, hint: 'The server has a problem; retry in a moment.'}
}

function fromCryptoError(error: CryptoError): Failure {
  const base = {message: oneLine(error.message), code: error.code}
  switch (error.code) {
    case 'FC_BAD_PASSPHRASE':
      return {
        ...base,
        exit: Exit.input,
        hint: process.env.FASTCHAT_PASSPHRASE ? 'Check FASTCHAT_PASSPHRASE, or unset it to be asked on the terminal.' : 'Try again.',
      }
    case 'FC_BAD_GROUP_KEY':
      return {...base, exit: Exit.trust, hint: "The group's key was not made by a member you trust; `fastchat group show <group>` says who keyed it."}
    case 'FC_BAD_KEY':
      return {...base, exit: Exit.input, hint: 'The key files in this profile may be damaged; `fastchat keys show` tells which profile is used.'}
    default:
      return {...base, exit: Exit.unexpected}
  }
}
