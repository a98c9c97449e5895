import {randomBytes} from 'node:crypto'
import {chmod, mkdir, readFile, rename, rm, writeFile} from 'node:fs/promises'
import {homedir} from 'node:os'
import {join, resolve} from 'node:path'

import {CliFailure, Exit} from '../commands/_lib/errors.js'

/**
 * The profile directory: everything the CLI knows about one user on this
 * machine. The private key is in it (passphrase-encrypted) and so is the
 * session token, hence a 0700 directory and 0600 files. Every write goes to a
 * temporary file renamed into place, so a crash or a concurrent `listen`
 * never leaves a half-written file behind.
 */

export interface Profile {
  username: string
  superserver: string
  server: string
  /** Absent once logged out. */
  token?: string
  expiresAt?: string
  /** Primary key fingerprint of the user's own key, lowercase hex. */
  fingerprint: string
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

const FILES = {
  profile: 'profile.json',
  privateKey: 'private-key.asc',
  publicKey: 'public-key.asc',
  contacts: 'contacts.json',
  state: 'state.json',
} as const

/** --profile, else FASTCHAT_HOME, else the XDG config directory. */
export function profileDirectory(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  if (flag) return resolve(flag)
  if (env.FASTCHAT_HOME) return resolve(env.FASTCHAT_HOME)
  const config = env.XDG_CONFIG_HOME || join(homedir(), '.config')
  return join(config, 'fastchat')
}

/**
 * What a hint naming a command must add so that pasting it uses this same
 * profile: ` --profile DIR` (quoted for the shell when needed), or nothing for
 * the default directory. Given whether it came from --profile or FASTCHAT_HOME:
 * the variable may not be set in the shell the hint is pasted into.
 */
export function profileHint(dir: string, env: NodeJS.ProcessEnv = process.env): string {
  if (resolve(dir) === profileDirectory(undefined, {...env, FASTCHAT_HOME: undefined})) return ''
  return ` --profile ${/^[\w./@%+=:,-]+$/.test(dir) ? dir : `'${dir.replaceAll("'", "'\\''")}'`}`
}

export class ProfileStore {
  constructor(readonly dir: string) {}

  path(name: keyof typeof FILES): string {
    return join(this.dir, FILES[name])
  }

  async profile(): Promise<Profile | undefined> {
    return this.readJson<Profile>('profile')
  }

  /** The profile of a registered user, or a clear error saying how to get one. */
  async requireProfile(): Promise<Profile> {
    const profile = await this.profile()
    if (!profile?.username) {
      throw new CliFailure(`No FastChat account in ${this.dir}.`, Exit.input, 'Run `fastchat register <username>` or `fastchat login <username>`, or pass --profile DIR.')
    }
    return profile
  }

  saveProfile(profile: Profile): Promise<void> {
    return this.writeJson('profile', profile)
  }

  async privateKey(): Promise<string | undefined> {
    return this.readText('privateKey')
  }

  async publicKey(): Promise<string | undefined> {
    return this.readText('publicKey')
  }

  async requireKeys(): Promise<{privateKey: string; publicKey: string}> {
    const [privateKey, publicKey] = await Promise.all([this.privateKey(), this.publicKey()])
    if (!privateKey || !publicKey) {
      throw new KeysMissing(this.dir)
    }
    return {privateKey, publicKey}
  }

  async saveKeys(keys: {privateKey: string; publicKey: string}): Promise<void> {
    await this.writeAtomic(this.path('privateKey'), keys.privateKey)
    await this.writeAtomic(this.path('publicKey'), keys.publicKey)
  }

  async contacts(): Promise<Contacts> {
    const stored = (await this.readJson<Contacts>('contacts')) ?? {}
    // JSON.parse makes an ordinary object: `contacts.constructor` would be Object's.
    return Object.assign(Object.create(null) as Contacts, stored)
  }

  /**
   * Read-modify-write in one go, so that two commands pinning different
   * contacts rarely step on each other; within this process (a group's keys
   * are pinned several at once) the updates take turns and none is lost.
   */
  updateContacts(change: (contacts: Contacts) => void): Promise<Contacts> {
    const update = this.contactsUpdate.then(async () => {
      const contacts = await this.contacts()
      change(contacts)
      await this.writeJson('contacts', contacts)
      return contacts
    })
    this.contactsUpdate = update.then(
      () => undefined,
      () => undefined,
    )
    return update
  }

  private contactsUpdate: Promise<void> = Promise.resolve()

  async state(): Promise<SyncState> {
    const state = await this.readJson<SyncState>('state')
    return {cursor: state?.cursor ?? 0, recentIds: state?.recentIds ?? []}
  }

  saveState(state: SyncState): Promise<void> {
    return this.writeJson('state', {cursor: state.cursor, recentIds: state.recentIds.slice(-RECENT_IDS_KEPT)})
  }

  private async readText(name: keyof typeof FILES): Promise<string | undefined> {
    try {
      return await readFile(this.path(name), 'utf8')
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined
      throw new CliFailure(`Cannot read ${this.path(name)}: ${(error as Error).message}`, Exit.input)
    }
  }

  private async readJson<T>(name: keyof typeof FILES): Promise<T | undefined> {
    const text = await this.readText(name)
    if (text === undefined) return undefined
    try {
      return JSON.parse(text) as T
    } catch {
      throw new CliFailure(`${this.path(name)} is not valid JSON.`, Exit.input, 'Fix or remove the file; it is written by FastChat only.')
    }
  }

  private writeJson(name: keyof typeof FILES, value: unknown): Promise<void> {
    return this.writeAtomic(this.path(name), `${JSON.stringify(value, null, 2)}\n`)
  }

  private async writeAtomic(file: string, content: string): Promise<void> {
    await this.ensureDir()
    const temp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`
    try {
      // 'wx': never follow or reuse something already there. Mode 0600 from the start, not after.
      await writeFile(temp, content, {mode: 0o600, flag: 'wx'})
      await chmod(temp, 0o600)
      await rename(temp, file)
    } catch (error) {
      await rm(temp, {force: true})
      throw error
    }
  }

  private async ensureDir(): Promise<void> {
    await mkdir(this.dir, {recursive: true, mode: 0o700})
    // mkdir's mode is filtered by the umask and ignored for a directory that exists.
    await chmod(this.dir, 0o700)
  }
}

class KeysMissing extends CliFailure {
  constructor(dir: string) {
    super(
      `No key pair in ${dir}.`,
      Exit.input,
      'Import your private key with `fastchat keys import FILE` (or copy private-key.asc and public-key.asc into the profile), or create one with `fastchat keys generate`.',
    )
  }
}
