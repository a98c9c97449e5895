import {createHash, randomInt, timingSafeEqual} from 'node:crypto'
import {hostname} from 'node:os'
import {setTimeout as sleep} from 'node:timers/promises'

import {z} from 'zod'

import {CryptoError, decryptText, encryptText, generateOneTimeKey, openLinkCheck, readPublicKey, sameFingerprint, sealLinkCheck, type OneTimeKey, unlockPrivateKey} from '../crypto/index.js'
import {deviceName as deviceNameSchema} from '../protocol/requests.js'
import {ApiClient, type Device} from './api-client.js'
import {FastChatError} from './errors.js'
import {assign, type ChatSession, type PassphraseProvider, superserverUrl, withFailover} from './session.js'
import type {Contacts, Store} from './store.js'

/*
 * Linking a device (docs/cli.md "device", docs/security.md "Devices"): the
 * protocol between a new device (`fastchat device link`) and one already
 * logged in (`fastchat device approve CODE`), over a server that relays only
 * what it cannot read or forge. The crypto is in crypto/devices.ts.
 */

/** Crockford's base32 alphabet: no I, L, O, U, which a person would misread. */
const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ'
/** The code's secret half: 6 characters, 30 bits, each guess costing an Argon2 derivation (64 MiB, ~0.4 s). */
const SECRET_LENGTH = 6
/** The new device asks about its link this often: a person approving sees "linked" within a second. */
export const LINK_POLL_MS = 1_000
/** The payload's format version. */
const PAYLOAD_VERSION = 1

/** What the approving device sends, encrypted to the new device's one-time key and signed with the account's key. */
const payloadSchema = z.object({
  v: z.literal(PAYLOAD_VERSION),
  secret: z.string(),
  username: z.string(),
  privateKey: z.string(),
  pins: z.record(z.string(), z.object({fingerprint: z.string(), publicKey: z.string(), pinnedAt: z.string(), verified: z.boolean()}).loose()),
  superserver: z.string(),
})
type Payload = Omit<z.infer<typeof payloadSchema>, 'pins'> & {pins: Contacts}

const digest = (text: string) => createHash('sha256').update(text).digest()
/** Constant time, whatever the lengths (the hashes have one length). */
const sameSecret = (a: string, b: string) => timingSafeEqual(digest(a), digest(b))

function newSecret(): string {
  let secret = ''
  for (let i = 0; i < SECRET_LENGTH; i++) secret += CROCKFORD[randomInt(CROCKFORD.length)]
  return secret
}

/**
 * A typed code as its two halves: `K7M2QX-9PXA4H`, in any case, with or without
 * the dash, spaces ignored, and the letters Crockford reads as digits (I, L → 1; O → 0).
 */
export function parseLinkCode(code: string): {link: string; secret: string} {
  const clean = code.toUpperCase().replace(/[\s-]/g, '').replace(/[IL]/g, '1').replace(/O/g, '0')
  if (!/^[0-9A-HJKMNP-TV-Z]{12}$/.test(clean)) {
    throw new FastChatError('FC_VALIDATION', 'A device code is 12 characters, as the new device printed it (e.g. K7M2QX-9PXA4H).', {field: 'code'})
  }
  return {link: clean.slice(0, 6), secret: clean.slice(6)}
}

export function checkDeviceName(name: string): string {
  const result = deviceNameSchema.safeParse(name)
  if (!result.success) throw new FastChatError('FC_VALIDATION', `The device name ${result.error.issues[0]?.message ?? 'is not valid'}.`, {field: 'device'})
  return result.data
}

/** This machine's name as a device name (`login`, `register` and `device link` default to it); "unnamed" when it is not a valid one. */
export function defaultDeviceName(): string {
  const result = deviceNameSchema.safeParse(hostname())
  return result.success ? result.data : 'unnamed'
}

export interface LinkedDevice {
  username: string
  device: {id: string; name: string}
  server: string
  fingerprint: string
}

/** A link request the new device made, waiting for its approval: `code` is what the person types on the other device. */
export class PendingLink {
  private constructor(
    readonly code: string,
    readonly expiresAt: string,
    private readonly link: string,
    private readonly secret: string,
    private readonly pollSecret: string,
    private readonly oneTime: OneTimeKey,
    private client: ApiClient,
    private readonly options: {store: Store; superserver: string; passphrase: PassphraseProvider},
  ) {}

  /**
   * The new device's half, step 1: a one-time key, the code's secret half and
   * the check, sent to a chat server the superserver assigns. The profile must be empty.
   */
  static async start(options: {store: Store; superserver?: string; name: string; passphrase: PassphraseProvider}): Promise<PendingLink> {
    const {store} = options
    const name = checkDeviceName(options.name)
    const existing = await store.profile()
    if (existing?.username) throw new FastChatError('FC_PROFILE_IN_USE', `This profile (${store.location}) already belongs to ${existing.username}.`, {location: store.location, username: existing.username})
    const superserver = superserverUrl(options.superserver)
    let client = new ApiClient(await assign(superserver))
    const oneTime = await generateOneTimeKey()
    const secret = newSecret()
    const check = await sealLinkCheck(secret, oneTime.fingerprint)
    const created = await withFailover({superserver, client}, (api) => api.createLink({publicKey: oneTime.publicKey, check, name}), (url) => void (client = client.withServer(url)))
    return new PendingLink(`${created.link}-${secret}`, created.expiresAt, created.link, secret, created.secret, oneTime, client, {...options, superserver})
  }

  /**
   * Step 3: polls (about once a second, until the link expires) for the
   * approval, then checks what came and saves the profile. Refuses, saving
   * nothing, a payload that does not carry this code's secret (someone who
   * does not know the code approved it) or a private key that is not the one
   * the account publishes.
   */
  async waitForApproval(signal?: AbortSignal): Promise<LinkedDevice> {
    const deadline = Date.parse(this.expiresAt)
    for (;;) {
      signal?.throwIfAborted()
      const answer = await withFailover({superserver: this.options.superserver, client: this.client}, (api) => api.pollLink(this.link, this.pollSecret), (url) => void (this.client = this.client.withServer(url)))
      if (answer.status === 'approved') return this.complete(answer)
      if (Date.now() > deadline) throw new FastChatError('FC_LINK_EXPIRED', 'The code expired before it was approved: run `fastchat device link` again.', {expiresAt: this.expiresAt})
      await sleep(LINK_POLL_MS, undefined, {signal})
    }
  }

  private async complete(answer: Extract<Awaited<ReturnType<ApiClient['pollLink']>>, {status: 'approved'}>): Promise<LinkedDevice> {
    const server = this.client.baseUrl
    const api = new ApiClient(server, answer.token)
    try {
      const published = await api.user(answer.username)
      if (published.username.toLowerCase() !== answer.username.toLowerCase()) refuse(`the server answered the key lookup for ${answer.username} with ${published.username}'s key`)
      const account = await readPublicKey(published.publicKey)
      let payload: Payload
      try {
        const opened = await decryptText({armored: answer.ciphertext, key: this.oneTime.key, senderPublicKey: account.armored})
        if (opened.verification.status !== 'valid') refuse(`the approval is not signed by ${answer.username}'s key`)
        payload = payloadSchema.parse(JSON.parse(opened.text)) as Payload
      } catch (error) {
        if (error instanceof FastChatError) throw error
        refuse('the approval cannot be read')
      }
      if (!sameSecret(payload.secret, this.secret)) refuse('someone other than you approved this code')
      if (payload.username.toLowerCase() !== answer.username.toLowerCase()) refuse(`the approval names ${payload.username}, the server ${answer.username}`)
      // The key must be the account's, and this person must be able to unlock it (the passphrase is theirs, not the link's).
      const unlocked = await unlockPrivateKey(payload.privateKey, await this.options.passphrase())
      if (!sameFingerprint(unlocked.fingerprint, account.fingerprint)) refuse(`the private key sent is not the one ${answer.username} publishes`)
      const {store, superserver} = this.options
      await store.saveKeys({privateKey: payload.privateKey, publicKey: unlocked.publicKey})
      await store.updateContacts((contacts: Contacts) => {
        for (const [id, contact] of Object.entries(payload.pins)) contacts[id.toLowerCase()] = contact
      })
      await store.saveState({cursor: answer.cursor, recentIds: []})
      await store.saveProfile({username: answer.username, superserver, server, token: answer.token, expiresAt: answer.expiresAt, fingerprint: account.fingerprint})
      return {username: answer.username, device: answer.device, server, fingerprint: account.fingerprint}
    } catch (error) {
      // Nothing was saved: end the session the server made for us, so a refused link leaves no device behind.
      await api.logout().catch(() => undefined)
      throw error
    }
  }
}

function refuse(reason: string): never {
  throw new FastChatError('FC_LINK_REFUSED', `Refused the approval: ${reason}. Nothing was saved.`, {reason})
}

/**
 * The approving device's half (step 2): reads the new device's request,
 * checks it with the code's secret half, and sends the account's key (still
 * passphrase-protected) and pins, encrypted to the new device's one-time key
 * and signed. Nothing is sent unless the check names the one-time key the
 * server handed over.
 */
export async function approveLink(session: ChatSession, code: string): Promise<{name: string}> {
  const {link, secret} = parseLinkCode(code)
  const request = await session.withFailover((api) => api.linkRequest(link))
  let named: string
  try {
    named = await openLinkCheck(request.check, secret)
  } catch (error) {
    if (!(error instanceof CryptoError)) throw error
    throw new FastChatError('FC_LINK_CODE_MISMATCH', "This code does not match the device's request; check it and try again.", {link})
  }
  const offered = await readPublicKey(request.publicKey).catch(() => undefined)
  if (!offered || !sameFingerprint(offered.fingerprint, named)) {
    throw new FastChatError('FC_LINK_KEY_SWAPPED', "The server's copy of this request carries another key than the new device made; nothing was sent.", {link})
  }
  const privateKey = await session.store.privateKey()
  if (!privateKey) throw new FastChatError('FC_NO_KEYS', `No key pair in ${session.store.location}.`, {location: session.store.location})
  const payload: Payload = {v: PAYLOAD_VERSION, secret, username: session.username, privateKey, pins: {...(await session.store.contacts())}, superserver: session.profile.superserver}
  const key = await session.key()
  const ciphertext = await encryptText({text: JSON.stringify(payload), to: [offered.armored], signer: key})
  await session.withFailover((api) => api.approveLink(link, {ciphertext}))
  return {name: request.name}
}

/** One of my devices by its exact name (or id): FC_DEVICE_NOT_FOUND, or FC_AMBIGUOUS_DEVICE when several have it. */
export function findDevice(devices: Device[], nameOrId: string): Device {
  const byId = devices.filter((device) => device.id === nameOrId.toLowerCase())
  const matches = byId.length > 0 ? byId : devices.filter((device) => device.name === nameOrId)
  if (matches.length > 1) throw new FastChatError('FC_AMBIGUOUS_DEVICE', `${matches.length} of your devices are named ${nameOrId}; revoke by id.`, {name: nameOrId, ids: matches.map((d) => d.id)})
  const [match] = matches
  if (!match) throw new FastChatError('FC_DEVICE_NOT_FOUND', `You have no device named ${nameOrId}.`, {name: nameOrId})
  return match
}
