import {Errors} from '@oclif/core'

import {CryptoError} from '../../crypto/index.js'
import {ApiError} from '../../client/api-client.js'
import {FastChatError} from '../../client/errors.js'
import {profileHint} from '../../client/profile-store.js'
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

/** The code of a failure that has none of its own. */
const CODE_BY_EXIT: Record<number, string> = {
  [Exit.input]: 'FC_USAGE',
  [Exit.unexpected]: 'FC_UNEXPECTED',
  [Exit.network]: 'FC_START_FAILED',
  [Exit.trust]: 'FC_KEY_MISMATCH',
  [Exit.rateLimited]: 'FC_RATE_LIMITED',
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
export function describeFailure(error: unknown, command?: string, profileDir?: string): Failure {
  const described = describe(error, command, profileDir)
  // Every failure has a code, for --json and scripts; the CLI's own refusals get the one their exit code stands for.
  const failure = {...described, code: described.code ?? CODE_BY_EXIT[described.exit] ?? 'FC_UNEXPECTED'}
  return {...failure, message: singleLine(failure.message), ...(failure.hint === undefined ? {} : {hint: singleLine(failure.hint)})}
}

function describe(error: unknown, command?: string, profileDir?: string): Failure {
  if (error instanceof CliFailure) return {message: error.message, hint: error.hint, exit: error.exit, code: error.code}
  if (error instanceof FastChatError && error.data.rekeyPending === true) return afterChange(error, command)
  if (error instanceof ApiError) return fromApiError(error, profileDir)
  if (error instanceof CryptoError) return fromCryptoError(error)
  if (error instanceof FastChatError) return fromClientError(error)
  if (error instanceof Errors.CLIError) {
    // this.error(...) in a command, or a parse error from oclif (which has `parse`).
    const exit = 'parse' in error ? Exit.input : (error.oclif.exit ?? Exit.unexpected)
    const help = command ? `fastchat ${command.replaceAll(':', ' ')} --help` : 'fastchat --help'
    const hint = error.suggestions?.[0] ?? ('parse' in error ? `See \`${help}\`.` : undefined)
    const code = error.code?.startsWith('FC_') ? error.code : undefined
    return {message: oneLine(error.message.replace(/See more help with --help/, '')), hint, exit, ...(code ? {code} : {})}
  }
  const message = error instanceof Error ? error.message : String(error)
  return {message: `Unexpected error: ${oneLine(message)}`, hint: 'Run again with DEBUG=1 for details, and report it if it persists.', exit: Exit.unexpected}
}

/** The server's group problems in the CLI's words: its detail may name ids the user never typed. */
const GROUP_PROBLEMS = new Map<string, {message: string; hint: string}>([
  ['FC_NOT_GROUP_MEMBER', {message: 'You are not a member of that group.', hint: '`fastchat group list` lists your groups.'}],
  ['FC_GROUP_NOT_FOUND', {message: 'There is no such group, or you are not in it.', hint: '`fastchat group list` lists your groups.'}],
  ['FC_GROUP_ADMIN_REQUIRED', {message: 'Only an admin of the group can do that.', hint: '`fastchat group show <group>` lists its admins.'}],
  ['FC_NOT_INVITED', {message: 'You have no open invitation to that group.', hint: '`fastchat group invitations` lists yours.'}],
])

function fromApiError(error: ApiError, profileDir?: string): Failure {
  // A server's own words: newlines are escaped by describeFailure, not joined, so they cannot pass for our text.
  const base = {message: error.message, code: error.code}
  if (error.status === 429) return {...base, exit: Exit.rateLimited, hint: 'You are sending too fast; wait a little and retry.'}
  if (error.status === 401) {
    return {...base, message: 'The server did not accept your session (expired, revoked or never logged in).', exit: Exit.input, hint: `Run \`fastchat login <username>${profileDir === undefined ? '' : profileHint(profileDir)}\`.`}
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

const text = (value: unknown) => (typeof value === 'string' ? value : '')

/** ` --profile DIR` for a hint about a profile directory (nothing for the default one, or a store that is not a directory). */
const profileFlag = (error: FastChatError) => (text(error.data.location) && error.data.location !== 'memory' ? profileHint(text(error.data.location)) : '')

/**
 * The client library's refusals (client/errors.ts) in the CLI's terms: the
 * exit code, and the command that helps. Keyed by code; the library's data
 * fills the hint in.
 */
const CLIENT_ERRORS: Record<string, (error: FastChatError) => Omit<Failure, 'message' | 'code'>> = {
  FC_NO_PROFILE: () => ({exit: Exit.input, hint: 'Run `fastchat register <username>` or `fastchat login <username>`, or pass --profile DIR.'}),
  FC_LINK_CODE_MISMATCH: () => ({exit: Exit.input, hint: 'Type the code exactly as the new device shows it; the link stays usable until it expires.'}),
  FC_LINK_KEY_SWAPPED: () => ({exit: Exit.trust, hint: 'The server (or something between you) tampered with the request: do not link through it.'}),
  FC_LINK_REFUSED: () => ({exit: Exit.trust, hint: 'Run `fastchat device link` again and approve the new code yourself.'}),
  FC_LINK_EXPIRED: () => ({exit: Exit.input, hint: 'Run `fastchat device link` again on the new device.'}),
  FC_AMBIGUOUS_DEVICE: () => ({exit: Exit.input, hint: '`fastchat device list` shows the ids; revoke by id.'}),
  FC_DEVICE_NOT_FOUND: () => ({exit: Exit.input, hint: '`fastchat device list` shows your devices\' names.'}),
  FC_NO_KEYS: () => ({
    exit: Exit.input,
    hint: 'Import your private key with `fastchat keys import FILE` (or copy private-key.asc and public-key.asc into the profile), or create one with `fastchat keys generate`.',
  }),
  FC_LOGGED_OUT: (error) => ({exit: Exit.input, hint: `Run \`fastchat login ${text(error.data.username)}${profileFlag(error)}\`.`}),
  FC_SESSION_EXPIRED: (error) => ({exit: Exit.input, hint: `Run \`fastchat login ${text(error.data.username)}${profileFlag(error)}\`.`}),
  FC_PROFILE_UNREADABLE: (error) => ({exit: Exit.input, ...(error.data.notJson ? {hint: 'Fix or remove the file; it is written by FastChat only.'} : {})}),
  FC_SAVE_FAILED: () => ({exit: Exit.input, hint: 'Free some space or move files away, or pass --out DIR with a directory you can write to.'}),
  FC_FILE_UNREADABLE: () => ({exit: Exit.input, hint: 'Check the path given to --image.'}),
  FC_FILE_TOO_LARGE: () => ({exit: Exit.input, hint: 'Send a smaller file, or split it.'}),
  FC_PAYLOAD_TOO_LARGE: () => ({exit: Exit.input, hint: 'Send a smaller file, or split it.'}),
  FC_UPLOAD_CUT_OFF: () => ({exit: Exit.network, hint: 'Try a smaller file; if small files fail too, check the server.'}),
  FC_MESSAGE_TOO_LARGE: (error) => ({exit: Exit.input, hint: `Send it as a file: fastchat send ${text(error.data.to)} --image FILE`}),
  FC_PROFILE_IN_USE: () => ({exit: Exit.input, hint: 'Use another --profile DIR (or FASTCHAT_HOME) for another account.'}),
  FC_USERNAME_TAKEN: () => ({exit: Exit.input, hint: 'Choose another one.'}),
  FC_WRONG_PASSWORD: () => ({exit: Exit.input}),
  FC_VALIDATION: (error) => ({exit: Exit.input, ...(error.data.field === 'password' ? {hint: 'Choose a longer one; a few words work well.'} : {})}),
  FC_NETWORK: (error) => ({
    exit: Exit.network,
    hint:
      error.data.outcome === 'unknown'
        ? '`fastchat group list` shows whether it was; if so, `fastchat send` to it makes its key.'
        : 'Check that the server is running (`fastchat up` starts a local cluster), then retry.',
  }),
  FC_BAD_RESPONSE: () => ({exit: Exit.network, hint: 'The server is misconfigured, out of date or not to be trusted; retry later, or ask its operator.'}),
  FC_DAEMON_UNAVAILABLE: () => ({exit: Exit.network, hint: 'Start it again with `fastchat daemon` (or `fastchat unlock`), or stop it with `fastchat lock`.'}),
  FC_KEY_MISMATCH: (error) => ({exit: Exit.trust, ...(error.data.current ? {hint: `Do not trust messages from ${text(error.data.username)} until you find out why.`} : {})}),
  FC_START_FAILED: () => ({exit: Exit.network}),
  FC_UNEXPECTED: () => ({exit: Exit.unexpected, hint: 'Run again with DEBUG=1 for details, and report it if it persists.'}),
  FC_NO_CHAT_SERVER: () => ({exit: Exit.network, hint: 'Start a local cluster with `fastchat up`, or pass --superserver URL.'}),
  FC_GROUP_REKEY_FAILED: () => ({exit: Exit.network, hint: "Try again in a moment; any member's `send` keys it too."}),
  FC_GROUP_NOT_FOUND: () => ({exit: Exit.input, hint: '`fastchat group list` lists your groups; a group you are not in can only be named by its id.'}),
  FC_USER_NOT_FOUND: (error) => ({
    exit: Exit.input,
    hint: `Check the spelling (usernames are not case-sensitive)${error.data.groupsChecked ? '; `fastchat group list` lists your groups' : ''}.`,
  }),
  FC_AMBIGUOUS_NAME: (error) => ({exit: Exit.input, hint: `Write #${text(error.data.name)} for the group or @${text(error.data.name)} for the user.`}),
  FC_AMBIGUOUS_GROUP: () => ({exit: Exit.input, hint: 'Name the group by its id.'}),
  FC_NOT_INVITED: () => ({exit: Exit.input, hint: '`fastchat group invitations` lists yours.'}),
  FC_KEY_CHANGED: (error) => ({exit: Exit.trust, hint: `Run \`fastchat keys verify ${text(error.data.username)}\` to compare fingerprints and accept it.`}),
  FC_KEY_LOOKUP_MISMATCH: () => ({exit: Exit.trust, hint: 'A server that does this is not to be trusted with key lookups; tell its operator, or use another server.'}),
  FC_BAD_KEY: (error) => ({exit: Exit.trust, hint: `Ask ${text(error.data.username)} to publish a new key.`}),
  FC_BAD_GROUP_KEY: (error) => ({
    exit: Exit.trust,
    hint: error.data.maker ? `Compare ${text(error.data.maker)}'s fingerprint with \`fastchat keys verify ${text(error.data.maker)}\`.` : "The group's key was not made by a member you trust.",
  }),
}

function fromClientError(error: FastChatError): Failure {
  const known = CLIENT_ERRORS[error.code]?.(error)
  return {message: oneLine(error.message), code: error.code, ...(known ?? {exit: Exit.input})}
}

/** A group change that stood, whose new key could not be made: the cause's exit code (4 for a changed key) and hint. */
function afterChange(error: FastChatError, command?: string): Failure {
  const cause = describe(error.cause, command)
  return {...cause, message: oneLine(error.message), hint: cause.hint ?? "Any member's next `fastchat send` to the group makes it."}
}
