import {createHash, randomBytes, randomInt} from 'node:crypto'

import type {ConsumedLink, DeviceLinkRepository} from '../../storage/repositories/device-link.repository.js'
import type {DeviceRow, SessionUser} from '../../storage/repositories/session.repository.js'
import type {AccountService} from './accounts.js'
import {DeviceError, UnavailableError} from './errors.js'

/*
 * Several devices per person (docs/architecture.md, "Devices"): a device is
 * a session with a name, and a new device gets the account's key end to end
 * from one already logged in. The server keeps the new device's one-time
 * public key and a check it cannot read (encrypted under the code's secret
 * half, which never reaches it), hands both to the approving device, relays
 * the approver's ciphertext back, and makes the new device's session when
 * the new device collects it: once.
 */

/** Crockford's base32 alphabet (no I, L, O, U): what a person reads off one screen and types on another. */
export const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ'
export const LINK_CODE_LENGTH = 6
/** How long a link waits for its approval (FASTCHAT_DEVICE_LINK_TTL_MS): a person walking to their other machine. */
export const DEVICE_LINK_TTL_MS = 5 * 60_000
/** An approval made in a link's last moments leaves the new device at least this long to collect it. */
const APPROVED_GRACE_MS = 60_000
/** Expired links are kept this long, so a late poll or approval hears 410 (or 409), not 404. Then housekeeping drops them. */
const EXPIRED_KEPT_MS = 10 * 60_000
/** Pending links on the whole cluster at most: each costs a row and a few KiB; past this, 503 until some expire. */
export const PENDING_LINKS_MAX = 10_000
/** Codes tried before giving up (a 6-character code space of 10^9 with at most 10^4 pending: a clash is rare). */
const CODE_TRIES = 5

const sha256 = (text: string) => createHash('sha256').update(text).digest()

export interface DevicesConfig {
  linkTtlMs: number
  sessionTtlMs: number
}

export interface DeviceView {
  id: string
  name: string
  createdAt: string
  lastActiveAt: string
  current: boolean
}

/** What devices need of session storage (SessionRepository). */
export interface DeviceSessions {
  devices(userId: string, tokenHash: Buffer): Promise<DeviceRow[]>
}

export type LinkPoll =
  | {status: 'pending'; expiresAt: string}
  | {status: 'approved'; username: string; ciphertext: string; token: string; expiresAt: string; device: {id: string; name: string}; cursor: number}

export function newLinkCode(): string {
  let code = ''
  for (let i = 0; i < LINK_CODE_LENGTH; i++) code += CROCKFORD[randomInt(CROCKFORD.length)]
  return code
}

export class DeviceService {
  constructor(
    private readonly accounts: AccountService,
    private readonly sessions: DeviceSessions,
    private readonly links: DeviceLinkRepository,
    private readonly config: DevicesConfig,
  ) {}

  // --- Devices ---

  async list(user: SessionUser, token: string): Promise<DeviceView[]> {
    const rows = await this.sessions.devices(user.userId, sha256(token))
    return rows.map((row) => ({
      id: row.id,
      name: row.name,
      createdAt: new Date(row.createdAt).toISOString(),
      lastActiveAt: new Date(row.lastActiveAt).toISOString(),
      current: row.current,
    }))
  }

  /** Ends one of the caller's sessions on every server, as a logout does; 404 for an id that is not one of theirs. */
  async revoke(user: SessionUser, id: string): Promise<void> {
    if (!(await this.accounts.endDevice(user, id))) throw new DeviceError('FC_DEVICE_NOT_FOUND', `You have no device ${id}.`)
  }

  // --- Links ---

  /** A new device asks to be linked: the code's public half, and its polling secret (only its hash is kept). */
  async createLink(input: {publicKey: string; check: string; name: string}): Promise<{link: string; secret: string; expiresAt: string}> {
    if ((await this.links.pending()) >= PENDING_LINKS_MAX) {
      throw new UnavailableError('FC_TOO_MANY_LINKS', 'Too many device links are waiting for approval; try again in a minute.', 60)
    }
    const secret = randomBytes(32).toString('base64url')
    for (let attempt = 0; attempt < CODE_TRIES; attempt++) {
      const link = newLinkCode()
      const expiresAt = await this.links.create({code: link, secretHash: sha256(secret), ...input, ttlMs: this.config.linkTtlMs})
      if (expiresAt) return {link, secret, expiresAt: expiresAt.toISOString()}
    }
    throw new UnavailableError('FC_TOO_MANY_LINKS', 'No free link code was found; try again.', 1)
  }

  /** Whether `bearer` is the polling secret of link `code` (then the caller is the new device, not a session). */
  async isPollingSecret(code: string, bearer: string): Promise<boolean> {
    return (await this.links.find(code, sha256(bearer)))?.secretMatches === true
  }

  /** The approving device reads what the new device sent; 404 unknown, 410 expired, 409 already approved. */
  async showLink(code: string): Promise<{publicKey: string; check: string; name: string; expiresAt: string}> {
    const link = await this.pendingLink(code)
    return {publicKey: link.publicKey, check: link.check, name: link.name, expiresAt: link.expiresAt.toISOString()}
  }

  async approve(user: SessionUser, code: string, ciphertext: string): Promise<void> {
    if (await this.links.approve(code, user.userId, ciphertext, APPROVED_GRACE_MS)) return
    await this.pendingLink(code) // throws why it is not pending
    throw new DeviceError('FC_LINK_USED', 'This link was approved meanwhile.')
  }

  /** The new device's poll (its secret already matched): pending, or, once, the approval with its new session. */
  async poll(code: string, secret: string): Promise<LinkPoll> {
    const secretHash = sha256(secret)
    const link = await this.links.find(code, secretHash)
    if (!link || !link.secretMatches) throw linkNotFound(code)
    if (link.consumed) throw new DeviceError('FC_LINK_USED', 'This link was already used: its session was handed out.')
    if (link.expired) throw linkExpired()
    if (!link.approved) return {status: 'pending', expiresAt: link.expiresAt.toISOString()}
    const token = randomBytes(32).toString('base64url')
    const consumed: ConsumedLink | undefined = await this.links.consume(code, secretHash, {tokenHash: sha256(token), ttlMs: this.config.sessionTtlMs, device: link.name})
    if (!consumed) throw new DeviceError('FC_LINK_USED', 'This link was already used: its session was handed out.')
    return {
      status: 'approved',
      username: consumed.username,
      ciphertext: consumed.ciphertext,
      token,
      expiresAt: consumed.session.expiresAt.toISOString(),
      device: {id: consumed.session.id, name: consumed.session.device},
      cursor: Number(consumed.cursor),
    }
  }

  /** Housekeeping: drops links long expired. */
  prune(): Promise<number> {
    return this.links.deleteExpired(EXPIRED_KEPT_MS)
  }

  private async pendingLink(code: string) {
    const link = await this.links.find(code)
    if (!link) throw linkNotFound(code)
    if (link.expired) throw linkExpired()
    if (link.approved || link.consumed) throw new DeviceError('FC_LINK_USED', 'This link was already approved.')
    return link
  }
}

const linkNotFound = (code: string) => new DeviceError('FC_LINK_NOT_FOUND', `No device link ${code}.`)
const linkExpired = () => new DeviceError('FC_LINK_EXPIRED', 'This device link has expired: run `fastchat device link` again on the new device.')

