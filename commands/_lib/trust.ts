import {CryptoError, formatFingerprint, readPublicKey} from '../../crypto/index.js'
import {ApiError} from './api-client.js'
import {CliFailure, Exit} from './errors.js'
import type {Contact} from './profile-store.js'
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
}

const contactId = (username: string) => username.toLowerCase()

/** What to tell the user when a key was pinned on first use: compare it out of band. */
export function firstUseNote(key: ServerKey): string {
  return (
    `Pinned ${key.username}'s key ${formatFingerprint(key.fingerprint)} (first use). ` +
    `Compare it with ${key.username} and run \`fastchat keys verify ${key.username} --fingerprint ...\`.`
  )
}

export class KeyChangedError extends CliFailure {
  /** `outcome`: what did not happen because of it. */
  constructor(
    readonly username: string,
    readonly pinnedFingerprint: string,
    readonly currentFingerprint: string,
    outcome = 'nothing was sent',
  ) {
    super(
      `${username}'s key has changed since you pinned it (pinned ${formatFingerprint(pinnedFingerprint)}, the server now has ${formatFingerprint(currentFingerprint)}); ${outcome}.`,
      Exit.trust,
      `Run \`fastchat keys verify ${username}\` to compare fingerprints and accept it.`,
      'FC_KEY_CHANGED',
    )
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
    if (!key) throw new CliFailure(`There is no user named ${username}.`, Exit.input, 'Check the spelling (usernames are not case-sensitive).', 'FC_USER_NOT_FOUND')
    return key
  }

  async pinned(username: string): Promise<Contact | undefined> {
    return (await this.session.store.contacts())[contactId(username)]
  }

  async pin(key: ServerKey, verified: boolean): Promise<Contact> {
    const contact: Contact = {fingerprint: key.fingerprint, publicKey: key.publicKey, pinnedAt: new Date().toISOString(), verified}
    await this.session.store.updateContacts((contacts) => {
      contacts[contactId(key.username)] = contact
    })
    return contact
  }

  /** The key to encrypt to: pinned on first use; refused (exit 4) if the server's key differs from the pin. */
  async forSending(username: string): Promise<KeyForSending> {
    const current = await this.requireCurrent(username)
    const pinned = await this.pinned(username)
    if (!pinned) {
      await this.pin(current, false)
      return {...current, firstUse: true}
    }
    if (pinned.fingerprint !== current.fingerprint) throw new KeyChangedError(current.username, pinned.fingerprint, current.fingerprint)
    // Encrypt to the pinned copy: it is the one the user trusted.
    return {...current, publicKey: pinned.publicKey, firstUse: false}
  }

  /** The key to verify a message from `username` against: the pinned one, else the server's, pinned now. Null if none exists. */
  async forVerifying(username: string): Promise<KeyForVerifying | null> {
    const pinned = await this.pinned(username)
    const current = await this.current(username)
    if (!pinned) {
      if (!current) return null
      await this.pin(current, false)
      return {publicKey: current.publicKey, fingerprint: current.fingerprint, keyChanged: false}
    }
    // A user the server no longer knows keeps their pinned key: old messages still verify.
    const keyChanged = current !== null && current.fingerprint !== pinned.fingerprint
    return {publicKey: pinned.publicKey, fingerprint: pinned.fingerprint, keyChanged}
  }
}

/** Parses a key the server handed out; an unusable one is a trust problem (exit 4), not a crash. */
async function checkedKey(username: string, armored: string): Promise<{publicKey: string; fingerprint: string}> {
  try {
    const info = await readPublicKey(armored)
    return {publicKey: info.armored, fingerprint: info.fingerprint}
  } catch (error) {
    if (!(error instanceof CryptoError)) throw error
    throw new CliFailure(`The server's key for ${username} is not usable: ${error.message}`, Exit.trust, `Ask ${username} to publish a new key.`, 'FC_BAD_KEY')
  }
}
