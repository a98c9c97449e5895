import {randomBytes} from 'node:crypto'
import {chmod, mkdir, readFile, rename, rm, writeFile} from 'node:fs/promises'
import {homedir} from 'node:os'
import {join, resolve} from 'node:path'

import {FastChatError} from './errors.js'
import {
  type Contacts,
  type ReceiptLog,
  requireKeys,
  requireProfile,
  type Profile,
  RECENT_IDS_KEPT,
  SAVED_FILES_KEPT,
  type SavedFile,
  type Store,
  type SyncState,
  trimReceiptLog,
  type PeerBook,
  peerBookOf,
} from './store.js'

export {contactOf, type Contact, type ContactOrigin, type Contacts, type Profile, RECENT_IDS_KEPT, type SyncState} from './store.js'

/**
 * The profile directory: everything the CLI knows about one user on this
 * machine. The private key is in it (passphrase-encrypted) and so is the
 * session token, hence a 0700 directory and 0600 files. Every write goes to a
 * temporary file renamed into place, so a crash or a concurrent `listen`
 * never leaves a half-written file behind.
 */

const FILES = {
  profile: 'profile.json',
  privateKey: 'private-key.asc',
  publicKey: 'public-key.asc',
  contacts: 'contacts.json',
  state: 'state.json',
  savedFiles: 'saved-files.json',
  receipts: 'receipts.json',
  peers: 'peers.json',
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

/** The on-disk Store: a profile directory. */
export class ProfileStore implements Store {
  constructor(readonly dir: string) {}

  get location(): string {
    return this.dir
  }

  path(name: keyof typeof FILES): string {
    return join(this.dir, FILES[name])
  }

  async profile(): Promise<Profile | undefined> {
    return this.readJson<Profile>('profile')
  }

  requireProfile(): Promise<Profile> {
    return requireProfile(this)
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

  requireKeys(): Promise<{privateKey: string; publicKey: string}> {
    return requireKeys(this)
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
    return this.inTurn(async () => {
      const contacts = await this.contacts()
      change(contacts)
      await this.writeJson('contacts', contacts)
      return contacts
    })
  }

  /** The profile's read-modify-writes (contacts, saved files, receipts) take turns within this process; a failed one does not stop the next. */
  private inTurn<T>(work: () => Promise<T>): Promise<T> {
    const update = this.updates.then(work)
    this.updates = update.then(
      () => undefined,
      () => undefined,
    )
    return update
  }

  private updates: Promise<void> = Promise.resolve()

  async state(): Promise<SyncState> {
    const state = await this.readJson<SyncState>('state')
    return {cursor: state?.cursor ?? 0, recentIds: state?.recentIds ?? []}
  }

  saveState(state: SyncState): Promise<void> {
    return this.writeJson('state', {cursor: state.cursor, recentIds: state.recentIds.slice(-RECENT_IDS_KEPT)})
  }

  async savedFile(messageId: string): Promise<SavedFile | undefined> {
    const files = (await this.readJson<Record<string, SavedFile>>('savedFiles')) ?? {}
    return Object.hasOwn(files, messageId) ? files[messageId] : undefined
  }

  /** Newest last; the oldest are dropped past SAVED_FILES_KEPT. Serialized like contacts, so concurrent saves in a page all land. */
  rememberSavedFile(messageId: string, file: SavedFile): Promise<void> {
    return this.inTurn(async () => {
      const files = (await this.readJson<Record<string, SavedFile>>('savedFiles')) ?? {}
      delete files[messageId]
      files[messageId] = file
      const ids = Object.keys(files)
      for (const id of ids.slice(0, Math.max(0, ids.length - SAVED_FILES_KEPT))) delete files[id]
      await this.writeJson('savedFiles', files)
    })
  }

  async receipts(): Promise<ReceiptLog> {
    return trimReceiptLog(await this.readJson<Partial<ReceiptLog>>('receipts'))
  }

  /** Serialized like contacts: the receipts of one page, and a `send` recording its message, all land. */
  updateReceipts(change: (log: ReceiptLog) => void): Promise<ReceiptLog> {
    return this.inTurn(async () => {
      const log = await this.receipts()
      change(log)
      const trimmed = trimReceiptLog(log)
      await this.writeJson('receipts', trimmed)
      return trimmed
    })
  }

  async peers(): Promise<PeerBook> {
    return peerBookOf(await this.readJson<Partial<PeerBook>>('peers'))
  }

  /** Serialized like contacts: an offer taken in and a send marking another one failed both land. */
  updatePeers(change: (book: PeerBook) => void): Promise<PeerBook> {
    return this.inTurn(async () => {
      const book = await this.peers()
      change(book)
      await this.writeJson('peers', peerBookOf(book))
      return book
    })
  }

  private async readText(name: keyof typeof FILES): Promise<string | undefined> {
    try {
      return await readFile(this.path(name), 'utf8')
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined
      throw new FastChatError('FC_PROFILE_UNREADABLE', `Cannot read ${this.path(name)}: ${(error as Error).message}`, {path: this.path(name)}, {cause: error})
    }
  }

  private async readJson<T>(name: keyof typeof FILES): Promise<T | undefined> {
    const text = await this.readText(name)
    if (text === undefined) return undefined
    try {
      return JSON.parse(text) as T
    } catch {
      throw new FastChatError('FC_PROFILE_UNREADABLE', `${this.path(name)} is not valid JSON.`, {path: this.path(name), notJson: true})
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
