import {setTimeout as sleep} from 'node:timers/promises'

import {unlockPrivateKey, type UnlockedKey} from '../crypto/index.js'
import {ApiClient, ApiError, assignServer, isFailoverError} from './api-client.js'
import {FastChatError} from './errors.js'
import {type Profile, requireKeys, requireProfile, type Store} from './store.js'

/** Asked for the key passphrase when the private key is first needed (a prompt, an environment variable, a secret store). */
export type PassphraseProvider = () => Promise<string>

export const DEFAULT_SUPERSERVER = 'http://127.0.0.1:4000'

/** Tries per request: the server we know, then up to two the superserver assigns. */
export const SEND_ATTEMPTS = 3
/** Between tries, so that a superserver that has not yet evicted a dead server gets a moment to. */
const RETRY_PAUSE_MS = 200

/** --superserver, else the one remembered in the profile, else FASTCHAT_SUPERSERVER, else the local default. */
export function superserverUrl(flag: string | undefined, profile?: Profile): string {
  return trimSlash(flag ?? profile?.superserver ?? process.env.FASTCHAT_SUPERSERVER ?? DEFAULT_SUPERSERVER)
}

const trimSlash = (url: string) => url.replace(/\/+$/, '')

/**
 * Pauses between asks when the superserver has no healthy chat server (503,
 * "try again shortly"): a server between two heartbeats, or one coming back,
 * is usually there again within a second or two. An unreachable superserver
 * is not retried: that is said at once.
 */
const ASSIGN_RETRY_PAUSES_MS = [250, 500, 1_000]

/**
 * Asks the superserver for a chat server, with a clear failure if it cannot
 * answer; `avoid` (the server just failed on) is not handed back while
 * another is healthy.
 */
export async function assign(superserver: string, avoid: string[] = []): Promise<string> {
  for (let attempt = 0; ; attempt++) {
    try {
      return trimSlash(await assignServer(superserver, avoid))
    } catch (error) {
      const pause = error instanceof ApiError && error.status === 503 ? ASSIGN_RETRY_PAUSES_MS[attempt] : undefined
      if (pause !== undefined) {
        await sleep(pause)
        continue
      }
      if (isFailoverError(error)) {
        throw new FastChatError('FC_NO_CHAT_SERVER', `The superserver ${superserver} could not give a chat server: ${(error as Error).message}`, {superserver}, {cause: error})
      }
      throw error
    }
  }
}

/**
 * Runs `call` against `server`; on a network error or a 503 (draining, no
 * database) asks the superserver for another server and runs it again, up to
 * `attempts` times in all. Callers make sure a repeated call is harmless (an
 * Idempotency-Key for sends). `onSwitch` hears of every new server.
 */
export async function withFailover<T>(
  start: {superserver: string; client: ApiClient},
  call: (api: ApiClient) => Promise<T>,
  onSwitch: (server: string) => Promise<void> | void,
  attempts = SEND_ATTEMPTS,
): Promise<T> {
  let client = start.client
  for (let attempt = 1; ; attempt++) {
    try {
      return await call(client)
    } catch (error) {
      if (!isFailoverError(error) || attempt >= attempts) throw error
      await sleep(RETRY_PAUSE_MS * attempt)
      // If the superserver is unreachable too, retry where we were.
      const server = await assignServer(start.superserver, [client.baseUrl]).then(trimSlash, () => undefined)
      if (server && server !== client.baseUrl) {
        client = client.withServer(server)
        await onSwitch(server)
      }
    }
  }
}

/** A logged-in profile: its API client, which follows failovers, and its key. */
export class ChatSession {
  private client: ApiClient
  private unlocked?: Promise<UnlockedKey>

  private constructor(
    readonly store: Store,
    private current: Profile & {token: string},
    private readonly passphrase: PassphraseProvider,
  ) {
    this.client = new ApiClient(current.server, current.token)
  }

  /** The logged-in session of `store`'s profile: FC_NO_PROFILE, FC_LOGGED_OUT or FC_SESSION_EXPIRED when there is none. */
  static async open(store: Store, passphrase: PassphraseProvider): Promise<ChatSession> {
    const profile = await requireProfile(store)
    const data = {username: profile.username, location: store.location}
    if (!profile.token) throw new FastChatError('FC_LOGGED_OUT', `${profile.username} is logged out in this profile.`, data)
    if (profile.expiresAt && Date.parse(profile.expiresAt) <= Date.now()) {
      throw new FastChatError('FC_SESSION_EXPIRED', `Your session expired on ${profile.expiresAt}.`, {...data, expiresAt: profile.expiresAt})
    }
    return new ChatSession(store, {...profile, token: profile.token}, passphrase)
  }

  get profile(): Profile {
    return this.current
  }

  get username(): string {
    return this.current.username
  }

  get api(): ApiClient {
    return this.client
  }

  isMe(username: string): boolean {
    return username.toLowerCase() === this.current.username.toLowerCase()
  }

  /** See withFailover(); a new server is remembered in the profile for the next command. */
  withFailover<T>(call: (api: ApiClient) => Promise<T>, attempts = SEND_ATTEMPTS): Promise<T> {
    return withFailover({superserver: this.current.superserver, client: this.client}, call, (server) => this.switchTo(server), attempts)
  }

  /** Asks the superserver for another server than the one that just failed (used by `listen` between its own retries). Returns the server in use. */
  async failover(): Promise<string> {
    const server = await assign(this.current.superserver, [this.current.server])
    if (server !== this.current.server) await this.switchTo(server)
    return server
  }

  /** Unlocks the private key once per session, asking the passphrase provider the first time it is needed. */
  async key(): Promise<UnlockedKey> {
    this.unlocked ??= requireKeys(this.store).then(async ({privateKey}) => unlockPrivateKey(privateKey, await this.passphrase()))
    try {
      return await this.unlocked
    } catch (error) {
      // A wrong passphrase (or none) is not remembered: the next call asks again.
      this.unlocked = undefined
      throw error
    }
  }

  private async switchTo(server: string): Promise<void> {
    this.client = this.client.withServer(server)
    // Re-read so that only the server changes, whatever another command wrote meanwhile.
    const saved = (await this.store.profile()) ?? this.current
    this.current = {...this.current, server}
    await this.store.saveProfile({...saved, server})
  }
}
