import type {Verification} from '../crypto/index.js'
import {FastChatError} from './errors.js'

/**
 * Where a client keeps what it knows about one user (DESIGN.md section 7):
 * the profile (who, which servers, the session), the key pair (the private
 * key passphrase-encrypted), the pinned contacts and the event cursor. The
 * CLI's profile directory is one implementation (./profile-store.ts), memory
 * another (MemoryStore, for bots and tests that keep nothing on disk).
 */
export interface Store {
  /** Where it is, for messages: a directory, or `memory`. */
  readonly location: string
  profile(): Promise<Profile | undefined>
  saveProfile(profile: Profile): Promise<void>
  privateKey(): Promise<string | undefined>
  publicKey(): Promise<string | undefined>
  saveKeys(keys: {privateKey: string; publicKey: string}): Promise<void>
  contacts(): Promise<Contacts>
  /** Read-modify-write; concurrent updates within a process take turns and none is lost. */
  updateContacts(change: (contacts: Contacts) => void): Promise<Contacts>
  state(): Promise<SyncState>
  saveState(state: SyncState): Promise<void>
  /** Files received and saved, by message id: shown again (name, path) without another download, and never saved twice. */
  savedFile(messageId: string): Promise<SavedFile | undefined>
  rememberSavedFile(messageId: string, file: SavedFile): Promise<void>
  /** Receipts (./receipts.ts): my messages sent from here, who got and read them, and which received ones were answered. */
  receipts(): Promise<ReceiptLog>
  /** Read-modify-write, as updateContacts; the log is trimmed to RECEIPTS_KEPT messages afterwards. */
  updateReceipts(change: (log: ReceiptLog) => void): Promise<ReceiptLog>
  /** The direct path (./peer.ts): contacts' peer offers, and messages sent only directly, waiting for a server. */
  peers(): Promise<PeerBook>
  /** Read-modify-write, as updateContacts. */
  updatePeers(change: (book: PeerBook) => void): Promise<PeerBook>
}

/** A contact's peer offer, as taken in (./peer.ts). */
export interface PeerOffer {
  id: string
  from: string
  urls: string[]
  capability: string
  expiresAt: string
  /** The contact's devices when it offered: with more than one, a file sent directly is stored on the server too. */
  devices?: number
  /** A direct post found no candidate answering, or one answering wrongly: not tried again. */
  failed?: 'unreachable' | 'refused'
}

/** A message delivered directly while no server answered: committed later, with its idempotency key, so it is stored once. */
export interface QueuedSend {
  to: string
  ciphertext: string
  idempotencyKey: string
  queuedAt: string
}

export interface PeerBook {
  /** By contact (lower case). */
  offers: Record<string, PeerOffer>
  /** Oldest first. */
  outbox: QueuedSend[]
}

/** Messages kept waiting for a server at most: past this a send that only went directly fails instead. */
export const OUTBOX_MAX = 1_000

/** A book read from disk (or anywhere): own properties only. */
export function peerBookOf(raw: Partial<PeerBook> | undefined): PeerBook {
  const offers = Object.create(null) as Record<string, PeerOffer>
  for (const [name, offer] of Object.entries(raw?.offers ?? {})) offers[name] = offer
  return {offers, outbox: Array.isArray(raw?.outbox) ? raw.outbox.slice(-OUTBOX_MAX) : []}
}

/**
 * What a profile knows of receipts (./receipts.ts), keyed by the server's
 * message ids. Only messages in `sent` (sent from this profile) get receipts
 * recorded: a receipt naming anything else is ignored.
 */
export interface ReceiptLog {
  /** My messages, oldest first: id → the conversation, a username or `group:<id>`. */
  sent: Record<string, string>
  /** Id → the users whose clients acknowledged it (delivered receipts). */
  delivered: Record<string, string[]>
  /** Id → the users whose verified read receipts name it. */
  read: Record<string, string[]>
  /** Received messages whose read receipt was sent (or not to be sent), newest last: history does not send it again. */
  answered: string[]
}

/** Messages whose receipts are kept (and received messages remembered as answered): the latest ones. */
export const RECEIPTS_KEPT = 10_000

export const emptyReceiptLog = (): ReceiptLog => ({
  sent: Object.create(null) as Record<string, string>,
  delivered: Object.create(null) as Record<string, string[]>,
  read: Object.create(null) as Record<string, string[]>,
  answered: [],
})

/** A log read from disk (or anywhere): own properties only, trimmed to the latest RECEIPTS_KEPT. */
export function trimReceiptLog(raw: Partial<ReceiptLog> | undefined): ReceiptLog {
  const log = emptyReceiptLog()
  const sentIds = Object.keys(raw?.sent ?? {}).slice(-RECEIPTS_KEPT)
  for (const id of sentIds) {
    log.sent[id] = String(raw!.sent![id])
    const delivered = raw?.delivered && Object.hasOwn(raw.delivered, id) ? raw.delivered[id] : undefined
    const read = raw?.read && Object.hasOwn(raw.read, id) ? raw.read[id] : undefined
    if (Array.isArray(delivered)) log.delivered[id] = delivered.map(String)
    if (Array.isArray(read)) log.read[id] = read.map(String)
  }
  log.answered = (Array.isArray(raw?.answered) ? raw.answered.map(String) : []).slice(-RECEIPTS_KEPT)
  return log
}

/** Where a received file was saved, and what opening it found. */
export interface SavedFile {
  path: string
  name: string
  type: string
  size: number
  verification: Verification
  signedId?: string
}

/** Saved files remembered: the latest ones; an older file is downloaded again if asked for (and saved under a new name). */
export const SAVED_FILES_KEPT = 10_000

export interface Profile {
  username: string
  superserver: string
  server: string
  /** Absent once logged out. */
  token?: string
  expiresAt?: string
  /** Primary key fingerprint of the user's own key, lowercase hex. */
  fingerprint: string
  /** Send read receipts for messages shown (`fastchat config read-receipts`); absent: on. */
  readReceipts?: boolean
  /** Open a peer endpoint whenever this profile follows its stream (`listen`; ./peer.ts). Off unless turned on (`fastchat config peer on`). */
  peer?: boolean
}

export interface Contact {
  fingerprint: string
  publicKey: string
  pinnedAt: string
  /** True once the user compared fingerprints (`keys verify --fingerprint`). */
  verified: boolean
  /**
   * How the pin came about: you wrote to them ('sent'), they wrote to you first
   * ('received'), or you settled it (`keys verify`, `keys trust`: 'verified').
   * Files from a 'received'-only contact are not saved without --download.
   * Absent in profiles older than this field: taken as 'sent'.
   */
  origin?: ContactOrigin
  /**
   * The fingerprint the server showed instead of the pinned one, once: sending
   * is refused (exit 4) until the user settles it with `keys trust` or
   * `keys verify`, even if the server later shows the pinned key again.
   */
  changedTo?: string
}
export type ContactOrigin = 'sent' | 'received' | 'verified'
/** Keyed by lower-case username. A null-prototype object: a user named `constructor` is a contact like any other. */
export type Contacts = Record<string, Contact>

/** The contact pinned for `username`, if any; own properties only. */
export function contactOf(contacts: Contacts, username: string): Contact | undefined {
  const id = username.toLowerCase()
  return Object.hasOwn(contacts, id) ? contacts[id] : undefined
}

export interface SyncState {
  /** The `seq` of the last event processed; 0 before the first poll. */
  cursor: number
  /** Ids of the last messages shown (the server's and the signed ones), newest last: delivery is at-least-once, the user sees each once. */
  recentIds: string[]
}

/**
 * Enough to cover any redelivery window (a retried page is at most 1,000
 * events), and a replay window: a message keeps two ids here, the server's
 * and the one its sender signed (./message-content.ts).
 */
export const RECENT_IDS_KEPT = 10_000


/** The profile of a registered user, or FC_NO_PROFILE. */
export async function requireProfile(store: Store): Promise<Profile> {
  const profile = await store.profile()
  if (!profile?.username) throw new FastChatError('FC_NO_PROFILE', `No FastChat account in ${store.location}.`, {location: store.location})
  return profile
}

/** Both halves of the key pair, or FC_NO_KEYS. */
export async function requireKeys(store: Store): Promise<{privateKey: string; publicKey: string}> {
  const [privateKey, publicKey] = await Promise.all([store.privateKey(), store.publicKey()])
  if (!privateKey || !publicKey) throw new FastChatError('FC_NO_KEYS', `No key pair in ${store.location}.`, {location: store.location})
  return {privateKey, publicKey}
}

/** A Store that keeps everything in memory: gone when the process ends (a bot's cursor starts at 0 again). */
export class MemoryStore implements Store {
  readonly location = 'memory'
  private saved: {profile?: Profile; keys?: {privateKey: string; publicKey: string}; contacts: Contacts; state: SyncState} = {
    contacts: Object.create(null) as Contacts,
    state: {cursor: 0, recentIds: []},
  }

  private readonly files = new Map<string, SavedFile>()
  private receiptLog = emptyReceiptLog()
  private peerBook = peerBookOf(undefined)

  async peers(): Promise<PeerBook> {
    return peerBookOf(structuredClone({...this.peerBook}))
  }

  async updatePeers(change: (book: PeerBook) => void): Promise<PeerBook> {
    const book = await this.peers()
    change(book)
    this.peerBook = peerBookOf(book)
    return this.peers()
  }

  async receipts(): Promise<ReceiptLog> {
    return trimReceiptLog(structuredClone({...this.receiptLog}))
  }

  async updateReceipts(change: (log: ReceiptLog) => void): Promise<ReceiptLog> {
    const log = await this.receipts()
    change(log)
    this.receiptLog = trimReceiptLog(log)
    return this.receipts()
  }

  async savedFile(messageId: string): Promise<SavedFile | undefined> {
    return this.files.get(messageId)
  }

  async rememberSavedFile(messageId: string, file: SavedFile): Promise<void> {
    this.files.delete(messageId)
    this.files.set(messageId, file)
    if (this.files.size > SAVED_FILES_KEPT) this.files.delete(this.files.keys().next().value!)
  }

  async profile(): Promise<Profile | undefined> {
    return this.saved.profile && {...this.saved.profile}
  }

  async saveProfile(profile: Profile): Promise<void> {
    this.saved.profile = {...profile}
  }

  async privateKey(): Promise<string | undefined> {
    return this.saved.keys?.privateKey
  }

  async publicKey(): Promise<string | undefined> {
    return this.saved.keys?.publicKey
  }

  async saveKeys(keys: {privateKey: string; publicKey: string}): Promise<void> {
    this.saved.keys = {...keys}
  }

  async contacts(): Promise<Contacts> {
    return Object.assign(Object.create(null) as Contacts, structuredClone({...this.saved.contacts}))
  }

  async updateContacts(change: (contacts: Contacts) => void): Promise<Contacts> {
    const contacts = await this.contacts()
    change(contacts)
    this.saved.contacts = contacts
    return this.contacts()
  }

  async state(): Promise<SyncState> {
    return {cursor: this.saved.state.cursor, recentIds: [...this.saved.state.recentIds]}
  }

  async saveState(state: SyncState): Promise<void> {
    this.saved.state = {cursor: state.cursor, recentIds: state.recentIds.slice(-RECENT_IDS_KEPT)}
  }
}
