import type {DataSource} from 'typeorm'

import type {MyPresence, PresenceEntry} from '../../protocol/presence.js'
import type {PresenceRepository} from '../../storage/repositories/presence.repository.js'
import type {PresenceVisibilityRepository} from '../../storage/repositories/presence-visibility.repository.js'
import type {SessionUser} from '../../storage/repositories/session.repository.js'
import type {EventAppender} from './groups.js'
import {usernameKey} from './accounts.js'

/**
 * Presence for people (docs/api.md "Presence", docs/security.md "Presence"):
 * online or last seen, from the polls and streams the servers record anyway
 * (server/delivery/peers.ts, PresenceRecorder), shown only to the people one
 * talks with, and announced to them as `presence` events.
 *
 * Changes are coalesced with hysteresis, so a client that reconnects every
 * 30 s announces nothing: a user comes online at the first recorded poll
 * after being offline (PresenceRepository.record answers who did), and goes
 * offline only when no poll of theirs was recorded for `offlineMs` (found by
 * sweep(), which every server runs; a conditional UPDATE decides, so a
 * change is announced once however many servers sweep).
 */

/** Default of FASTCHAT_PRESENCE_OFFLINE_MS: over the longest poll (60 s) and the refresh of presence rows (30 s), so a client that reconnects is never seen to leave. */
export const PRESENCE_OFFLINE_MS_DEFAULT = 90_000
/** Most people one change is announced to (the most recent 1:1 correspondents): bounds what one user coming online costs. */
export const PRESENCE_FANOUT_MAX = 500
/** Most users one sweep turns offline; the next sweep goes on with the rest. */
const SWEEP_MAX_USERS = 1_000

export interface PresenceServiceConfig {
  offlineMs?: number
  fanOutMax?: number
}

type Announced = 'online' | 'offline'

export class PresenceService {
  readonly offlineMs: number
  private readonly fanOutMax: number

  constructor(
    private readonly db: DataSource,
    private readonly presence: PresenceRepository,
    private readonly visibility: PresenceVisibilityRepository,
    private readonly stream: EventAppender,
    private readonly delivery: {announce(userIds: string[]): void},
    config: PresenceServiceConfig = {},
  ) {
    this.offlineMs = config.offlineMs ?? PRESENCE_OFFLINE_MS_DEFAULT
    this.fanOutMax = config.fanOutMax ?? PRESENCE_FANOUT_MAX
  }

  /** GET /v1/presence: each name asked, once, in order; `unknown` for no such user and for those `viewer` may not see. */
  async lookup(viewer: SessionUser, usernames: string[]): Promise<PresenceEntry[]> {
    const asked = new Map<string, string>()
    for (const name of usernames) if (!asked.has(usernameKey(name))) asked.set(usernameKey(name), name)
    const rows = await this.visibility.lookup(viewer.userId, [...asked.keys()], this.offlineMs)
    return rows.map((row): PresenceEntry => {
      const username = row.username ?? asked.get(row.key)!
      if (row.username === null || row.visible !== true) return {username, presence: 'unknown'}
      if (row.hidden) return {username, presence: 'hidden'}
      return {username, presence: row.online ? 'online' : 'offline', lastSeen: row.lastSeen ? new Date(row.lastSeen).toISOString() : null}
    })
  }

  /** GET /v1/me/presence: my setting, and what the people I talk with see. */
  async own(user: SessionUser): Promise<MyPresence> {
    const row = await this.visibility.own(user.userId, this.offlineMs)
    if (row.hidden) return {visible: false, presence: 'hidden'}
    return {visible: true, presence: row.online ? 'online' : 'offline', lastSeen: row.lastSeen ? new Date(row.lastSeen).toISOString() : null}
  }

  /**
   * PUT /v1/me/presence. Hiding announces nothing (contacts see `hidden` when
   * they ask) and stops every announcement about the user at once; showing
   * it again announces `online` at the next poll recorded.
   */
  async setVisible(user: SessionUser, visible: boolean): Promise<MyPresence> {
    await this.visibility.setVisible(user.userId, visible)
    return this.own(user)
  }

  /** Users PresenceRecorder found coming online: announce it. */
  async cameOnline(userIds: string[]): Promise<void> {
    for (const id of userIds) await this.announce(id, 'online')
  }

  /** Turns offline those whose last poll is older than the offline delay, and announces it; answers how many. */
  async sweep(): Promise<number> {
    const gone = await this.presence.sweepOffline(this.offlineMs, SWEEP_MAX_USERS)
    for (const user of gone) await this.announce(user.id, 'offline')
    return gone.length
  }

  /**
   * Appends `{type: "presence", user, presence, lastSeen}` to the streams of
   * the user's audience and wakes them. Under the user's row (held shared
   * until commit): nothing is announced for a user who is hidden, or whose
   * state changed again meanwhile (the later change is announced instead).
   */
  private async announce(userId: string, state: Announced): Promise<void> {
    const told = await this.db.transaction(async (tx) => {
      const user = await this.visibility.hold(tx, userId)
      if (!user || user.hidden || user.online !== (state === 'online')) return []
      const audience = await this.visibility.audience(tx, userId, this.fanOutMax, this.offlineMs)
      if (audience.length === 0) return []
      const lastSeen = user.lastSeen ? new Date(user.lastSeen).toISOString() : null
      await this.stream.append(tx, audience, {type: 'presence', payload: {user: user.username, presence: state, lastSeen}})
      return audience
    })
    this.delivery.announce(told)
  }
}
