import {formatFingerprint} from '../../crypto/index.js'
import type {GroupNotice} from '../../client/group-events.js'
import type {PresenceNotice} from '../../client/presence-events.js'
import type {GroupRef} from '../../client/group-targets.js'
import {formatSize} from '../../client/downloads.js'
import type {OpenedFile} from '../../client/file-receive.js'
import type {MessageVerification, OpenedBase} from '../../client/opened.js'
import {isFile, type OpenedMessage} from '../../client/receive.js'
import type {PeerOfferNotice} from '../../client/peer.js'
import type {ReceiptNotice} from '../../client/receipts.js'
import type {Report} from '../../client/reports.js'
import type {ServerKey} from '../../client/trust.js'
import {multiLine, singleLine} from './display.js'

/**
 * How the CLI shows what the client library hands it: messages, files,
 * group events and reports, as lines for a terminal. Every field from
 * outside goes through the sanitizer (./display.ts) here.
 */

/**
 * The human form: `[sentAt] from: text  ✔ verified`, with a warning line
 * before it when the key changed. The mark is on the header line and covers
 * the whole message; its further lines follow, each starting with
 * CONTINUATION (`  | `), so that none can pass for a header (docs/cli.md).
 */
export function formatMessage(message: OpenedMessage, options: LabelOptions = {}): string[] {
  const lines: string[] = []
  if (message.keyChanged) lines.push(`WARNING: ${singleLine(message.from)}'s key has changed; this message is NOT verified`)
  if (isFile(message)) return [...lines, ...formatFile(message, options)]
  const head = `[${singleLine(message.sentAt)}] ${senderLabel(message, options)}:`
  const {verification} = message
  if (verification.status === 'undecryptable' || message.text === null) {
    const reason = 'reason' in verification ? ` (${singleLine(verification.reason)})` : ''
    lines.push(`${head} ✘ could not decrypt message ${singleLine(message.id)}${reason}`)
    return lines
  }
  const [first, ...rest] = multiLine(message.text)
  // History marks my own messages (✓ sent, ✓✓ delivered, read): after the verification, on the header line.
  const status = statusMark(message)
  lines.push(`${head} ${first}  ${verificationMark(verification)}${status ? `  ${status}` : ''}`, ...rest)
  return lines
}

/**
 * `[sentAt] alice sent photo.png (12.3 KiB, image/png) → /path/photo.png  ✔ verified`,
 * then the caption on a line of its own.
 */
export function formatFile(message: OpenedFile, options: LabelOptions = {}): string[] {
  const head = `[${singleLine(message.sentAt)}] ${senderLabel(message, options)}`
  const {verification} = message
  const lines: string[] = []
  if (verification.status === 'undecryptable') {
    lines.push(`${head}: ✘ could not decrypt file ${singleLine(message.id)} (${singleLine(verification.reason)})`)
  } else if (message.path === null) {
    const mark = verificationMark(verification)
    const why =
      message.held === 'unknown-sender'
        ? 'not downloaded: you have not written to them'
        : message.held === 'too-large'
          ? 'not downloaded: larger than --max-download'
          : message.held === 'direct-only'
            ? 'sent directly to another of your devices; the server never had it'
            : 'not downloaded'
    const hint = message.held === 'direct-only' ? '' : '; --download saves it'
    lines.push(`${head} sent a file (${why}${hint})${mark ? `  ${mark}` : ''}`)
  } else {
    const what = `${singleLine(message.name ?? '')} (${formatSize(message.size ?? 0)}, ${singleLine(message.type ?? '')})`
    lines.push(`${head} sent ${what} → ${singleLine(message.path)}  ${verificationMark(verification)}`)
  }
  // On one line: a caption's newlines are escaped like a file name's.
  if (message.caption !== null) lines.push(`  caption: ${singleLine(message.caption)}`)
  return lines
}

export interface LabelOptions {
  /** Label my own messages (sent from another of my devices) `you → bob` rather than by my name: `inbox` and `listen` do. */
  sentAsYou?: boolean
}

/** Who sent it, as printed: `alice`, or `#friends alice` for a group message; with sentAsYou, `you → bob` or `#friends you` for my own. */
export function senderLabel(message: Pick<OpenedBase, 'from' | 'group' | 'to' | 'sent'>, options: LabelOptions = {}): string {
  const mine = options.sentAsYou === true && message.sent === true
  if (!message.group) return mine ? `you → ${singleLine(message.to)}` : singleLine(message.from)
  return `#${singleLine(message.group.name ?? message.group.id)} ${mine ? 'you' : singleLine(message.from)}`
}


/** `✔ verified` or `✘ NOT VERIFIED (why)`; empty for a file that was not downloaded. */
export function verificationMark(verification: MessageVerification): string {
  switch (verification.status) {
    case 'valid':
      return '✔ verified'
    case 'unsigned':
      return '✘ NOT VERIFIED (not signed)'
    case 'not-downloaded':
      return ''
    default:
      return `✘ NOT VERIFIED (${singleLine(verification.reason)})`
  }
}

/** What to tell the user when a key was pinned on first use: compare it out of band. */
export function firstUseNote(key: Pick<ServerKey, 'username' | 'fingerprint'>): string {
  return (
    `Pinned ${key.username}'s key ${formatFingerprint(key.fingerprint)} (first use). ` +
    `Compare it with ${key.username} and run \`fastchat keys verify ${key.username} --fingerprint ...\`.`
  )
}


/** `friends (9d2c…)`, or the id alone when the name is unknown; safe to print. */
export const describeGroup = (group: GroupRef): string => (group.name === null ? group.id : `${singleLine(group.name)} (${group.id})`)


/** `friends` for messages, safe to print. */
export const groupName = (group: {name: string}): string => singleLine(group.name)

/** The line for a group event; `isMe` turns our own name into "you". */
export function summarize(notice: GroupNotice, isMe: (username: string) => boolean): string {
  const who = (user: string | null) => (user === null ? 'someone' : isMe(user) ? 'you' : singleLine(user))
  const list = (users: string[]) => (users.length === 0 ? 'nobody' : users.map(who).join(', '))
  const group = singleLine(notice.name)
  const by = who(notice.by)
  switch (notice.type) {
    case 'group.created': {
      const others = notice.users.filter((user) => user !== notice.by)
      return `${by} created ${group}${others.length > 0 ? ` with ${list(others)}` : ''}`
    }
    case 'group.member_added':
      return notice.by !== null && notice.users.length === 1 && notice.users[0] === notice.by
        ? `${list(notice.users)} joined ${group}`
        : `${by} added ${list(notice.users)} to ${group}`
    case 'group.invited':
      // To the invitee only: the way in, as a command to copy.
      return `${by} invited you to #${group}: fastchat group join ${joinArgument(notice)}`
    case 'group.member_invited':
      return `${by} invited ${list(notice.users)} to ${group}`
    case 'group.member_removed':
      return notice.left || (notice.by !== null && notice.users.length === 1 && notice.users[0] === notice.by)
        ? `${list(notice.users)} left ${group}`
        : `${by} removed ${list(notice.users)} from ${group}`
    case 'group.role_changed':
      return `${by} made ${list(notice.users)} ${notice.role === 'admin' ? 'an admin' : `a ${singleLine(notice.role ?? 'member')}`} of ${group}`
    case 'group.rekey_needed':
      return `${group} needs a new key (epoch ${notice.epoch})`
    case 'group.key': {
      const members = notice.members ?? notice.users.length
      return `${by} made the key of ${group} for epoch ${notice.epoch} (${members} member${members === 1 ? '' : 's'})`
    }
    default:
      return `${group}: ${singleLine(notice.type)}${notice.by ? ` by ${by}` : ''}`
  }
}

/** How to name a group on the command line: its name when that is one plain word, else its id. */
const joinArgument = (notice: Pick<GroupNotice, 'group' | 'name'>): string => (/^[\w.-]{1,64}$/.test(notice.name) ? notice.name : notice.group)

/** The human form: `* alice added dave to friends`. */
export const formatNotice = (notice: GroupNotice, isMe: (username: string) => boolean): string => `* ${summarize(notice, isMe)}`


/** A report from the library (client/reports.ts) as the one line `inbox` and `listen` print on stderr. */
export function formatReport(report: Report): string {
  switch (report.type) {
    case 'key.pinned':
      return firstUseNote(report)
    case 'cursor.reset':
      return report.reason === 'expired'
        ? `Notice: some events expired on the server before this profile fetched them; continuing from ${report.to}. Use \`fastchat history <user>\` to see older messages.`
        : `Notice: the saved cursor (${report.from}) is ahead of the server's event stream; continuing from ${report.to}.`
    case 'event.skipped':
      return `Notice: skipped ${report.seq === null ? 'an event' : `event ${report.seq}`}: ${singleLine(report.reason)}`
    case 'group.keyed':
      return `Made the key of ${singleLine(report.name)} for epoch ${report.epoch}.`
    case 'message.skipped':
      return `Notice: skipped a message: ${singleLine(report.reason)}`
    case 'connection.lost':
      return `Connection to ${singleLine(report.server)} lost (${singleLine(report.reason)}); retrying.`
    case 'connection.restored':
      return `Reconnected to ${singleLine(report.server)}.`
    case 'transport':
      return report.transport === 'stream'
        ? 'Reading events as a stream (SSE).'
        : `Reading events by long poll${report.reason === undefined ? '' : `: ${singleLine(report.reason)}`}.`
    case 'receipts.failed':
      return `Notice: could not send read receipts: ${singleLine(report.reason)}`
    case 'group.rekey_failed':
      return `Notice: could not key the new epoch of group ${report.group}: ${report.network ? 'the server could not be reached' : singleLine(report.message)}`
    case 'outbox.dropped':
      return `Notice: a message to ${singleLine(report.to)} that went only directly was refused by the server: ${singleLine(report.reason)}`
    case 'peer.listening':
      return `Peer endpoint at ${report.urls.map(singleLine).join(', ')}, offered to ${report.offered} contact${report.offered === 1 ? '' : 's'}.`
    case 'peer.failed':
      return `Notice: no direct path (${singleLine(report.reason)}); messages go through the servers.`
  }
}

/** `bob offered a direct path (2 addresses, until 10:42:00).` — one line, sanitized. */
export function formatPeerOffer(offer: PeerOfferNotice): string {
  if (!offer.accepted) return `Notice: ignored a peer offer from ${singleLine(offer.from)}: ${singleLine(offer.reason ?? 'not valid')}.`
  return `${singleLine(offer.from)} offered a direct path (${offer.candidates ?? 0} address${offer.candidates === 1 ? '' : 'es'}, until ${singleLine(offer.expiresAt ?? '?')}).`
}

/** `Receipt: bob read 2 of your messages (✔ verified).` — one line, every name sanitized. */
export function formatReceipt(receipt: ReceiptNotice): string {
  const count = receipt.messages.length
  const what = count === 0 ? 'none of your messages' : count === 1 ? `your message ${singleLine(receipt.messages[0]!)}` : `${count} of your messages`
  const verdict =
    receipt.verification === undefined ? '' : receipt.verification.status === 'valid' ? ' (✔ verified)' : ` (✘ NOT verified: ${singleLine('reason' in receipt.verification ? receipt.verification.reason : receipt.verification.status)})`
  return `Receipt: ${singleLine(receipt.by)} ${receipt.status === 'read' ? 'read' : 'got'} ${what}${verdict}.`
}

/** History's mark on one of my messages: `✓ sent`, `✓✓ delivered`, `✓✓ read`, or for a group `✓✓ read by 2 of 3`. */
export function statusMark(message: Pick<OpenedBase, 'status' | 'receipts'>): string {
  if (!message.status) return ''
  const members = message.receipts?.members
  if (members !== undefined) {
    const read = message.receipts!.readBy.length
    const delivered = new Set([...message.receipts!.deliveredTo, ...message.receipts!.readBy].map((name) => name.toLowerCase())).size
    if (read > 0) return `✓✓ read by ${read} of ${members}`
    if (delivered > 0) return `✓✓ delivered to ${delivered} of ${members}`
    return '✓ sent'
  }
  return message.status === 'read' ? '✓✓ read' : message.status === 'delivered' ? '✓✓ delivered' : '✓ sent'
}

/** A group event as `inbox --json` and `listen --json` print it: the library's data and the line shown for it. */
export type ShownNotice = GroupNotice & {summary: string}

/** A presence event as `listen --verbose` shows it: `alice is online`. */
export const formatPresence = (notice: PresenceNotice): string => `${singleLine(notice.user)} is ${notice.presence === 'online' ? 'online' : 'offline'}`

/** How long ago an ISO time was, for people: `just now`, `5 min ago`, `3 h ago`, `2 days ago` (the time itself if it cannot be read). */
export function timeAgo(iso: string, now = Date.now()): string {
  const at = Date.parse(iso)
  if (Number.isNaN(at)) return singleLine(iso)
  const seconds = Math.max(0, Math.round((now - at) / 1000))
  if (seconds < 60) return 'just now'
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`
  if (seconds < 86_400) return `${Math.floor(seconds / 3600)} h ago`
  const days = Math.floor(seconds / 86_400)
  return `${days} day${days === 1 ? '' : 's'} ago`
}
