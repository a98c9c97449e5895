import {createHash} from 'node:crypto'

import {ApiError, type MessageEvent, type Rejected, type ServerEvent} from './api-client.js'
import type {EventTransport} from './event-stream.js'
import {type GroupEventResponder, type GroupNotice, groupNotice, isGroupEvent} from './group-events.js'
import {isPeerOfferEvent, type PeerOfferNotice, type PeerOffers} from './peer.js'
import {isPresenceEvent, type PresenceNotice, presenceNotice} from './presence-events.js'
import {RECENT_IDS_KEPT, type SyncState} from './profile-store.js'
import type {MessageOpener, OpenedMessage} from './receive.js'
import {isReceiptEvent, type ReceiptNotice, type Receipts} from './receipts.js'
import type {Reporter} from './reports.js'
import type {ChatSession} from './session.js'

/** Direct copies remembered by their ciphertext's hash (EventSync.claimDirect). */
const DIRECT_COPIES_KEPT = 1_000

const digest = (ciphertext: string) => createHash('sha256').update(ciphertext).digest('base64')

/** Events per poll: small enough that one batch prints quickly, large enough to catch up fast. */
export const PAGE_SIZE = 100

export interface PageResult {
  /** Events the server returned (messages and others, duplicates included). */
  events: number
  /** The cursor was reset (expired or ahead) and nothing was read: poll again. */
  reset: boolean
}

/** One page, opened: hand out `items`, then commit(). */
export interface Batch {
  items: SyncItem[]
  result: PageResult
  /** The cursor once committed. */
  next: number
  commit(): Promise<void>
}

const isMessage = (event: ServerEvent): event is MessageEvent => event.type === 'message' && typeof (event as MessageEvent).id === 'string'

/** What a page delivers, in stream order: messages, group events (one line each), receipts for my messages, and presence events (not shown by default). */
export type SyncItem = OpenedMessage | GroupNotice | ReceiptNotice | PresenceNotice | PeerOfferNotice

export const isGroupNotice = (item: SyncItem): item is GroupNotice => 'seq' in item && item.type !== 'presence'

export const isPeerOfferNotice = (item: SyncItem): item is PeerOfferNotice => 'accepted' in item && (item as PeerOfferNotice).type === 'peer.offer'

export const isPresenceNotice = (item: SyncItem): item is PresenceNotice => 'seq' in item && item.type === 'presence'

/**
 * The daemon's record of what its peer endpoint showed (./daemon/feed.ts),
 * shared by the readers of the stored cursor it makes for each turn: the
 * server copies of those messages are dropped (known by their ciphertext's
 * hash, or by signed id once opened), and the ids go into the stored seen ids
 * with the next page committed. What a page is showing is marked here too,
 * so that a direct copy arriving meanwhile is not shown twice.
 */
export class DirectClaims {
  private readonly ids = new Set<string>()
  private readonly showing = new Set<string>()
  /**
   * Signed ids pages showed (the latest RECENT_IDS_KEPT): a direct copy arriving after a page's commit, before its
   * seen ids reached the store that claim() is given, was shown a second time.
   */
  private readonly shown = new Set<string>()
  private unsaved: string[] = []
  readonly copies = new Map<string, OpenedMessage>()

  /** Claims `signedId` unless it was shown (here, in a page being shown, or in `seen`, the stored seen ids). */
  claim(signedId: string, seen: readonly string[], copy?: {ciphertext: string; message: OpenedMessage}): boolean {
    if (this.ids.has(signedId) || this.showing.has(signedId) || this.shown.has(signedId) || seen.includes(signedId)) return false
    this.ids.add(signedId)
    if (this.ids.size > RECENT_IDS_KEPT) this.ids.delete(this.ids.values().next().value!)
    this.unsaved.push(signedId)
    if (copy) {
      this.copies.set(digest(copy.ciphertext), copy.message)
      if (this.copies.size > DIRECT_COPIES_KEPT) this.copies.delete(this.copies.keys().next().value!)
    }
    return true
  }

  /** A direct copy that could not be handed to anyone: its server copy is shown after all. */
  release(signedId: string): void {
    this.ids.delete(signedId)
    this.unsaved = this.unsaved.filter((id) => id !== signedId)
    for (const [hash, message] of this.copies) if (message.signedId === signedId) this.copies.delete(hash)
  }

  has(signedId: string): boolean {
    return this.ids.has(signedId)
  }

  /** A page being read is showing this signed id, until committed. */
  mark(signedId: string): void {
    this.showing.add(signedId)
  }

  /** At a commit: the page's ids are stored now, and so are the claims made since the last. */
  settle(shown: string[]): string[] {
    for (const id of shown) {
      if (!this.showing.delete(id)) continue
      this.shown.add(id)
      if (this.shown.size > RECENT_IDS_KEPT) this.shown.delete(this.shown.values().next().value!)
    }
    const unsaved = this.unsaved
    this.unsaved = []
    return unsaved
  }
}

/**
 * Reads the event stream from the profile's cursor (DESIGN.md section 2):
 * at-least-once on the wire, once for the user. A page is opened in full,
 * then handed out, and only then are the cursor and the seen ids saved: a
 * crash or Ctrl-C in between shows the page again (deduped by id) rather than
 * losing it. Group events are handed out too, and answered (a rekey) before
 * the cursor moves; answering twice is harmless, the group is keyed once.
 */
export class EventSync {
  private state?: SyncState
  /** Signed ids of the page being opened and not yet committed: a direct copy of one of them is dropped. */
  private readonly inPage = new Set<string>()
  /** Signed ids shown by the direct path since the last commit (also saved at once). */
  private readonly direct = new Set<string>()
  /** Signed ids ever shown by the direct path here (the latest RECENT_IDS_KEPT): their server copies are what read receipts name. */
  private readonly directShown = new Set<string>()
  /**
   * Direct copies by the SHA-256 of their ciphertext (the latest DIRECT_COPIES_KEPT): a server copy is byte for byte
   * the same, so it is known without being decrypted again.
   */
  private readonly directCopies = new Map<string, OpenedMessage>()

  /**
   * `from`: read from this cursor instead of the store's, and keep the
   * position in memory only: the store's cursor and seen ids are neither read
   * nor saved (the daemon's `?since=`, where the caller keeps its own cursor).
   */
  constructor(
    private readonly session: ChatSession,
    private readonly opener: MessageOpener,
    private readonly report: Reporter,
    private readonly groups?: GroupEventResponder,
    private readonly from?: {cursor: number},
    /** How pages are read: the long poll unless given (./event-stream.ts streams when it can). */
    private readonly transport?: EventTransport,
    /** Receipt events are opened into items with it; with `read`, read receipts are sent for the messages of a committed page. */
    private readonly receipts?: {handler: Receipts; read: boolean; soonMs?: number},
    /** Peer offers in the stream are taken in with it (./peer.ts); without it they are skipped. */
    private readonly offers?: PeerOffers,
    /** The daemon's direct claims (DirectClaims), for a reader of the stored cursor. */
    private readonly claims?: DirectClaims,
  ) {}

  /**
   * A message that came by the direct path (./peer.ts), opened: true when it
   * is new and is to be shown, and then its signed id is remembered (and
   * saved) so that its server copy is dropped; false when it was shown
   * already, by either path.
   */
  async claimDirect(signedId: string, copy?: {ciphertext: string; message: OpenedMessage}): Promise<boolean> {
    const state = (this.state ??= this.from ? {cursor: this.from.cursor, recentIds: []} : await this.session.store.state())
    if (this.inPage.has(signedId) || this.direct.has(signedId) || state.recentIds.includes(signedId)) return false
    this.direct.add(signedId)
    this.directShown.add(signedId)
    if (copy) {
      this.directCopies.set(digest(copy.ciphertext), copy.message)
      if (this.directCopies.size > DIRECT_COPIES_KEPT) this.directCopies.delete(this.directCopies.keys().next().value!)
    }
    if (this.directShown.size > RECENT_IDS_KEPT) this.directShown.delete(this.directShown.values().next().value!)
    this.state = {cursor: state.cursor, recentIds: [...state.recentIds, signedId].slice(-RECENT_IDS_KEPT)}
    await this.persist()
    return true
  }

  private saving: Promise<void> = Promise.resolve()

  /** Saves the state as it is when the write starts, one write at a time: a page's commit and a direct claim cannot overwrite each other's. */
  private persist(): Promise<void> {
    if (this.from) return Promise.resolve()
    const write = this.saving.then(() => this.session.store.saveState(this.state!))
    this.saving = write.catch(() => undefined)
    return write
  }

  /** Polls once (waiting up to `timeoutMs` when nothing is there) and delivers the new messages and group events. */
  async page(timeoutMs: number, deliver: (item: SyncItem) => void, signal?: AbortSignal): Promise<PageResult> {
    const batch = await this.read(timeoutMs, signal)
    for (const item of batch.items) deliver(item)
    await batch.commit()
    return batch.result
  }

  /**
   * Polls once and opens the page, but moves nothing: the caller hands the
   * items out, then calls commit(), which answers group events and saves the
   * cursor and the seen ids. Not committing (a crash, a consumer that stops)
   * means the page comes again, deduplicated by id.
   */
  async read(timeoutMs: number, signal?: AbortSignal): Promise<Batch> {
    const state = (this.state ??= this.from ? {cursor: this.from.cursor, recentIds: []} : await this.session.store.state())
    let answer: {events: ServerEvent[]; next: number; rejected: Rejected[]}
    try {
      answer = this.transport
        ? await this.transport.read(this.session.api, state.cursor, timeoutMs, PAGE_SIZE, signal)
        : await this.session.api.events(state.cursor, timeoutMs, PAGE_SIZE, signal)
    } catch (error) {
      if (await this.resetCursor(state, error)) return {items: [], result: {events: 0, reset: true}, next: this.cursor, commit: async () => undefined}
      throw error
    }
    // What the cursor already passed: a stream opened before another reader of the stored cursor moved it (the daemon's).
    const after = (seq: number | null) => seq === null || seq > state.cursor
    answer = {...answer, events: answer.events.filter((event) => after(event.seq)), rejected: answer.rejected.filter((rejected) => after(rejected.seq))}
    // An event that does not match the API is skipped, with one notice, and the cursor moves past it: a bad server cannot wedge the stream.
    for (const {seq, error} of answer.rejected) this.report({type: 'event.skipped', seq, reason: error.message})
    const seen = new Set(state.recentIds)
    const notices = new Map<number, GroupNotice | PresenceNotice>(answer.events.filter(isGroupEvent).map((event) => [event.seq, groupNotice(event)]))
    for (const event of answer.events) if (isPresenceEvent(event)) notices.set(event.seq, presenceNotice(event))
    // Before the messages: one may be from a group we left, no longer in our list but named by its events.
    this.groups?.learn([...notices.values()].filter((notice): notice is GroupNotice => notice.type !== 'presence'))
    const opened: SyncItem[] = []
    const shownIds: string[] = []
    const readAlso: OpenedMessage[] = []
    for (const event of answer.events) {
      const notice = notices.get(event.seq)
      if (isMessage(event) && !seen.has(event.id)) {
        seen.add(event.id)
        shownIds.push(event.id)
        // The server copy of a message shown directly: not opened again; its read receipt names this id.
        const hash = (this.directCopies.size > 0 || (this.claims?.copies.size ?? 0) > 0) && !event.to.group ? digest(event.ciphertext) : undefined
        const direct = hash === undefined ? undefined : (this.directCopies.get(hash) ?? this.claims?.copies.get(hash))
        if (direct && direct.from.toLowerCase() === event.from.toLowerCase()) {
          const {via: _via, ...shown} = direct
          readAlso.push({...shown, id: event.id} as OpenedMessage)
          continue
        }
        const message = await this.opener.open(event)
        // The same signed message under a new server id: the operator (or a member) sending it again, or its copy that
        // came by the direct path first. Dropped.
        if (message.signedId !== undefined) {
          if (seen.has(message.signedId) || this.direct.has(message.signedId) || this.claims?.has(message.signedId)) {
            // Its direct copy was shown: the read receipt names this, the server's message (the sender knows it by that id).
            if (this.directShown.has(message.signedId) || this.claims?.has(message.signedId)) readAlso.push(message)
            continue
          }
          seen.add(message.signedId)
          this.inPage.add(message.signedId)
          this.claims?.mark(message.signedId)
          shownIds.push(message.signedId)
        }
        opened.push(message)
      } else if (notice && !seen.has(notice.id)) {
        seen.add(notice.id)
        shownIds.push(notice.id)
        opened.push(notice)
      } else if (this.receipts && isReceiptEvent(event)) {
        opened.push(...(await this.receipts.handler.open(event)))
      } else if (this.offers && isPeerOfferEvent(event)) {
        opened.push(await this.offers.take(event))
      }
    }
    const next = Math.max(state.cursor, answer.next)
    const commit = async () => {
      const delivered = opened.filter(isGroupNotice)
      if (this.groups && delivered.length > 0) await this.groups.answer(delivered)
      // Trimmed here as on disk: a `listen` that runs for days keeps a window, not every id it ever saw. From the state
      // now, not the one the page began with: direct copies shown meanwhile (claimDirect) stay remembered.
      const now = this.state ?? state
      const claimed = this.claims && !this.from ? this.claims.settle(shownIds) : []
      this.state = {cursor: next, recentIds: [...now.recentIds, ...shownIds, ...claimed].slice(-RECENT_IDS_KEPT)}
      this.inPage.clear()
      this.direct.clear()
      await this.persist()
      // The page was handed out (shown, or taken by the daemon's program): now it is read.
      const shown = opened.filter((item): item is OpenedMessage => 'kind' in item)
      // Sent copies (my messages from my other devices): their receipts count here too.
      const mine = shown.filter((message) => this.session.isMe(message.from))
      if (this.receipts && mine.length > 0) await this.receipts.handler.recordSentCopies(mine)
      if (this.receipts?.read) {
        const read = [...shown, ...readAlso]
        // Following, the pages of a moment share one request (Receipts.acknowledgeSoon); an inbox sends before it ends.
        if (this.receipts.soonMs) this.receipts.handler.acknowledgeSoon(read, this.receipts.soonMs)
        else await this.receipts.handler.acknowledge(read)
      }
    }
    return {items: opened, result: {events: answer.events.length + answer.rejected.length, reset: false}, next, commit}
  }

  get cursor(): number {
    return this.state?.cursor ?? 0
  }

  private async resetCursor(state: SyncState, error: unknown): Promise<boolean> {
    if (!(error instanceof ApiError)) return false
    const {problem} = error
    if (error.status === 410 && error.code === 'FC_CURSOR_EXPIRED' && typeof problem.oldest === 'number') {
      this.report({type: 'cursor.reset', from: state.cursor, to: problem.oldest, reason: 'expired'})
      this.state = {...state, cursor: problem.oldest}
    } else if (error.status === 409 && error.code === 'FC_CURSOR_AHEAD' && typeof problem.last === 'number') {
      this.report({type: 'cursor.reset', from: state.cursor, to: problem.last, reason: 'ahead'})
      this.state = {...state, cursor: problem.last}
    } else {
      return false
    }
    await this.persist()
    return true
  }
}
