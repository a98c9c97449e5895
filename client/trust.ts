import {CryptoError, formatFingerprint, readPublicKey} from '../crypto/index.js'
import {ApiError, isFailoverError} from './api-client.js'
import {FastChatError} from './errors.js'
import {type Contact, type ContactOrigin, contactOf, requireKeys} from './store.js'
import type {ChatSession} from './session.js'

/**
 * Trust on first use (DESIGN.md section 4): the first key seen for a contact
 * is pinned in contacts.json; afterwards the server's key must match the pin.
 * A change is never accepted silently: sending refuses, receiving warns, and
 * `fastchat keys verify` is how the user accepts the new key.
 *
 * Fingerprints are always computed here from the key itself; the
 * `fingerprint` field the server sends alongside is not trusted.
 */

/** A key change or a sender's key is re-checked at most this often by a long-running `listen`. */
const CURRENT_KEY_TTL_MS = 60_000

export interface ServerKey {
  username: string
  publicKey: string
  fingerprint: string
}

export interface KeyForSending extends ServerKey {
  /** Pinned just now: the user has never compared this fingerprint. */
  firstUse: boolean
}

export interface KeyForVerifying {
  publicKey: string
  fingerprint: string
  /** The server now has a different key than the one pinned (verification used the pinned one). */
  keyChanged: boolean
  /** A contact the user chose (wrote to, verified, trusted), not one pinned only because they wrote first. */
  known: boolean
}

const contactId = (username: string) => username.toLowerCase()

const newContact = (key: ServerKey, verified: boolean): Omit<Contact, 'origin'> => ({
  fingerprint: key.fingerprint,
  publicKey: key.publicKey,
  pinnedAt: new Date().toISOString(),
  verified,
})

export class KeyChangedError extends FastChatError {
  /** `outcome`: what did not happen because of it. */
  constructor(
    readonly username: string,
    readonly pinnedFingerprint: string,
    readonly currentFingerprint: string,
    outcome = 'nothing was sent',
  ) {
    super(
      'FC_KEY_CHANGED',
      `${username}'s key has changed since you pinned it (pinned ${formatFingerprint(pinnedFingerprint)}, the server now has ${formatFingerprint(currentFingerprint)}); ${outcome}.`,
      {username, pinned: pinnedFingerprint, current: currentFingerprint},
    )
    this.name = 'KeyChangedError'
  }
}

/** The server answered a key lookup for one name with another's: the way to re-pin a trusted contact's key. */
export class LookupMismatchError extends FastChatError {
  constructor(asked: string, answered: string) {
    super('FC_KEY_LOOKUP_MISMATCH', `The server answered the key lookup for ${asked} with a key for ${answered}; refused, nothing was pinned.`, {asked, answered})
    this.name = 'LookupMismatchError'
  }
}

export class KeyDirectory {
  private readonly seen = new Map<string, {at: number; key: ServerKey | null}>()

  constructor(private readonly session: ChatSession) {}

  /** The key the server has for `username` now, checked and fingerprinted locally; null if there is no such user. */
  async current(username: string): Promise<ServerKey | null> {
    const cached = this.seen.get(contactId(username))
    if (cached && Date.now() - cached.at < CURRENT_KEY_TTL_MS) return cached.key
    let key: ServerKey | null
    try {
      const answer = await this.session.withFailover((api) => api.user(username))
      // A server that answers for another name is trying to file its key under a name we trust.
      if (contactId(answer.username) !== contactId(username)) throw new LookupMismatchError(username, answer.username)
      key = {username: answer.username, ...(await checkedKey(answer.username, answer.publicKey))}
    } catch (error) {
      if (!(error instanceof ApiError && error.status === 404)) throw error
      key = null
    }
    this.seen.set(contactId(username), {at: Date.now(), key})
    return key
  }

  /** The current key of an existing user, or an input error naming them. */
  async requireCurrent(username: string): Promise<ServerKey> {
    const key = await this.current(username)
    if (!key) throw new FastChatError('FC_USER_NOT_FOUND', `There is no user named ${username}.`, {username})
    return key
  }

  async pinned(username: string): Promise<Contact | undefined> {
    return contactOf(await this.session.store.contacts(), username)
  }

  /**
   * Pins `key` on first use: never over an existing pin, whatever the server
   * says (a concurrent command that pinned first wins; the caller gets that
   * pin back). Only the user's own act replaces a pin: see replacePin().
   */
  async pinFirstUse(key: ServerKey, origin: ContactOrigin): Promise<Contact> {
    let kept: Contact | undefined
    await this.session.store.updateContacts((contacts) => {
      kept = contactOf(contacts, key.username)
      if (!kept) contacts[contactId(key.username)] = {...newContact(key, false), origin}
      else if (origin === 'sent' && kept.origin === 'received') contacts[contactId(key.username)] = kept = {...kept, origin}
    })
    return kept ?? {...newContact(key, false), origin}
  }

  /** Remembers that the server showed another key for a pinned contact: sending to them is refused until the user decides. */
  private async noteChange(username: string, fingerprint: string): Promise<void> {
    await this.session.store.updateContacts((contacts) => {
      const pinned = contactOf(contacts, username)
      if (pinned && pinned.fingerprint !== fingerprint) contacts[contactId(username)] = {...pinned, changedTo: fingerprint}
    })
  }

  /** The user's decision (`keys verify --accept/--fingerprint`, `keys trust`): `key` replaces whatever was pinned. */
  async replacePin(key: ServerKey, verified: boolean): Promise<Contact> {
    const contact: Contact = {...newContact(key, verified), origin: 'verified'}
    await this.session.store.updateContacts((contacts) => {
      contacts[contactId(key.username)] = contact
    })
    return contact
  }

  /** The key to encrypt to: pinned on first use; refused (exit 4) if the server's key differs from the pin. */
  async forSending(username: string): Promise<KeyForSending> {
    if (this.session.isMe(username)) return this.ownKey()
    const current = await this.requireCurrent(username)
    const before = await this.pinned(username)
    const pinned = before ?? (await this.pinFirstUse(current, 'sent'))
    if (pinned.fingerprint !== current.fingerprint) throw new KeyChangedError(current.username, pinned.fingerprint, current.fingerprint)
    // A change seen once (a message under another key, say) stays until the user decides, even if the server turns back.
    if (pinned.changedTo !== undefined) throw new KeyChangedError(current.username, pinned.fingerprint, pinned.changedTo)
    // Writing to someone makes them a contact you chose: their files are saved without --download.
    if (before?.origin === 'received') await this.pinFirstUse(current, 'sent')
    // Encrypt to the pinned copy: it is the one the user trusted.
    return {...current, publicKey: pinned.publicKey, firstUse: before === undefined}
  }

  /**
   * A note to self: encrypted to the key in this profile, the one that will
   * open it. Nothing is pinned and there is nothing to compare: it is ours.
   */
  private async ownKey(): Promise<KeyForSending> {
    const {publicKey} = await requireKeys(this.session.store)
    const own = await readPublicKey(publicKey)
    return {username: this.session.username, publicKey: own.armored, fingerprint: own.fingerprint, firstUse: false}
  }

  /** The key to verify a message from `username` against: the pinned one, else the server's, pinned now. Null if none exists. */
  async forVerifying(username: string): Promise<KeyForVerifying | null> {
    const pinned = await this.pinned(username)
    // With no server to ask (a message that came by the direct path while the servers are away), a pinned key is
    // enough: it is the one trusted; whether the server's changed is seen at the next lookup that reaches one.
    const current = await this.current(username).catch((error: unknown) => {
      if (pinned && isFailoverError(error)) return undefined
      throw error
    })
    if (current === undefined) return {publicKey: pinned!.publicKey, fingerprint: pinned!.fingerprint, keyChanged: false, known: pinned!.origin !== 'received'}
    if (!pinned) {
      if (!current) return null
      const kept = await this.pinFirstUse(current, 'received')
      return {publicKey: kept.publicKey, fingerprint: kept.fingerprint, keyChanged: kept.fingerprint !== current.fingerprint, known: false}
    }
    // A user the server no longer knows keeps their pinned key: old messages still verify.
    const keyChanged = current !== null && current.fingerprint !== pinned.fingerprint
    if (keyChanged && pinned.changedTo !== current.fingerprint) await this.noteChange(username, current.fingerprint)
    return {publicKey: pinned.publicKey, fingerprint: pinned.fingerprint, keyChanged, known: pinned.origin !== 'received'}
  }
}

/** Parses a key the server handed out; an unusable one is a trust problem (exit 4), not a crash. */
async function checkedKey(username: string, armored: string): Promise<{publicKey: string; fingerprint: string}> {
  try {
    const info = await readPublicKey(armored)
    return {publicKey: info.armored, fingerprint: info.fingerprint}
  } catch (error) {
    if (!(error instanceof CryptoError)) throw error
    throw new FastChatError('FC_BAD_KEY', `The server's key for ${username} is not usable: ${error.message}`, {username, fromServer: true}, {cause: error})
  }
}
