import {z} from 'zod'

import {CryptoError, decryptText, encryptText, isSealedReceipt, openReceipt, sealReceipt, type UnlockedKey, type Verification} from '../crypto/index.js'
import {RECEIPTS_PER_REQUEST_MAX} from '../protocol/requests.js'
import type {DeliveredReceiptEvent, ReadReceiptEvent, ServerEvent} from './api-client.js'
import {judge} from './opened.js'
import type {OpenedMessage} from './receive.js'
import type {Reporter} from './reports.js'
import type {ChatSession} from './session.js'
import {contactOf, type ReceiptLog} from './store.js'
import type {KeyDirectory} from './trust.js'

/**
 * Receipts (docs/api.md, "Receipts"; docs/cli.md, "Receipts").
 *
 * Delivered: the server appends `receipt.delivered` to a sender's stream when
 * a recipient's client acknowledged the message (its cursor passed it). The
 * server knows this anyway, so it is taken as the server says.
 *
 * Read: the reader's client sends, after showing messages, one end-to-end
 * encrypted receipt per sender (POST /v1/receipts), signed, encrypted to the
 * sender only. Its plaintext:
 *
 *   {"v": 1, "type": "read", "to": "alice", "messages": ["<id>", …], "conversation": {"user": "bob"}}
 *   {"v": 1, "type": "read", "to": "alice", "messages": ["<id>"], "conversation": {"group": "<id>", "epoch": 3}}
 *
 * `conversation` is the one the messages were sent in, as their sender wrote
 * it. The sender's client verifies the signature against the pinned key of
 * the event's `from` (a receipt signed by anyone else is not verified), and
 * counts only ids of its own messages sent in that conversation, to `from`.
 */

export const RECEIPT_VERSION = 1
/** Ids in one read receipt: a page of events holds at most 1,000 messages. */
const MAX_IDS_PER_RECEIPT = 1_000

const readReceipt = z.strictObject({
  v: z.literal(RECEIPT_VERSION),
  type: z.literal('read'),
  to: z.string().min(1).max(64),
  messages: z.array(z.uuid()).min(1).max(MAX_IDS_PER_RECEIPT),
  conversation: z.union([z.strictObject({user: z.string().min(1).max(64)}), z.strictObject({group: z.uuid(), epoch: z.number().int().min(0)})]),
})

/** What the stream said about my messages, one item per reader: `listen --json` prints it as is. */
export interface ReceiptNotice {
  type: 'receipt'
  /** `receipt:<seq>:<by>` (`receipt:<seq>:<by>:<k>` for a reader's k-th read receipt in one event): what a webhook's Idempotency-Key carries. */
  id: string
  status: 'delivered' | 'read'
  by: string
  /** Ids of my messages (sent from this profile) it names; others are left out. */
  messages: string[]
  /** For a read receipt: whether it is signed by `by`'s pinned key. An unverified one is not recorded. */
  verification?: Verification | {status: 'undecryptable'; reason: string}
}

export const isReceiptNotice = (item: object): item is ReceiptNotice => (item as {type?: unknown}).type === 'receipt' && !('seq' in item) && !('kind' in item)

export const isReceiptEvent = (event: ServerEvent): event is DeliveredReceiptEvent | ReadReceiptEvent => event.type === 'receipt.delivered' || event.type === 'receipt.read'

const same = (a: string, b: string) => a.toLowerCase() === b.toLowerCase()

/** A message's conversation as its sender wrote it: what a read receipt for it names. */
type ReceiptConversation = {user: string} | {group: string; epoch: number}

/** Pages of 1,000 events `history` reads at most to find receipts not yet taken in (Receipts.catchUp). */
const CATCH_UP_PAGES = 5

/**
 * Following the stream, read receipts of the pages shown within this long go
 * in one request (one receipt per sender); the first after a quiet spell goes
 * at once. A busy conversation costs the servers one request every two
 * seconds, not one per page: as long as the servers' gathering window
 * (FASTCHAT_RECEIPT_FLUSH_MS), which a request waits for in a busy
 * conversation anyway (docs/benchmarks.md, "Receipts, sixth pass").
 */
export const READ_RECEIPTS_BATCH_MS = 2_000

export class Receipts {
  constructor(
    private readonly session: ChatSession,
    private readonly keys: KeyDirectory,
    private readonly report: Reporter,
  ) {}

  /** Remembers a message I sent (`to`: a username or `group:<id>`): only these get receipts recorded. */
  async recordSent(id: string, to: string): Promise<void> {
    await this.session.store.updateReceipts((log) => {
      log.sent[id] = to
    })
  }

  /**
   * My messages sent from my other devices (their copies in my stream, `from`
   * me): remembered as sent, so their receipts are recorded here too.
   */
  async recordSentCopies(messages: {id: string; to: string; verification: {status: string}}[]): Promise<void> {
    const log = await this.session.store.receipts()
    const fresh = messages.filter((message) => message.verification.status === 'valid' && !Object.hasOwn(log.sent, message.id))
    if (fresh.length === 0) return
    await this.session.store.updateReceipts((stored) => {
      for (const message of fresh) stored.sent[message.id] = message.to
    })
  }

  /** The notices a receipt event makes (none when it names no message of mine), recorded in the store when trusted. */
  async open(event: DeliveredReceiptEvent | ReadReceiptEvent): Promise<ReceiptNotice[]> {
    const log = await this.session.store.receipts()
    const notices = event.type === 'receipt.delivered' ? this.delivered(event, log) : await this.readAll(event, log)
    const trusted = notices.filter((notice) => notice.messages.length > 0 && (notice.verification === undefined || notice.verification.status === 'valid'))
    if (trusted.length > 0) {
      await this.session.store.updateReceipts((stored) => {
        for (const notice of trusted) {
          const book = notice.status === 'delivered' ? stored.delivered : stored.read
          for (const id of notice.messages) {
            const by = Object.hasOwn(book, id) ? book[id]! : []
            if (!by.some((name) => same(name, notice.by))) book[id] = [...by, notice.by]
          }
        }
      })
    }
    return notices.filter((notice) => notice.messages.length > 0 || notice.verification?.status !== 'valid')
  }

  private delivered(event: DeliveredReceiptEvent, log: ReceiptLog): ReceiptNotice[] {
    return event.receipts
      .map(({by, messages}) => ({
        type: 'receipt' as const,
        id: `receipt:${event.seq}:${by}`,
        status: 'delivered' as const,
        by,
        messages: messages.filter((id) => sentTo(log, id, by, undefined)),
      }))
      .filter((notice) => notice.messages.length > 0)
  }

  /**
   * Each read receipt of the event (a server gathers those to one user into
   * one event), opened on its own. The k-th of the same reader in one event
   * (k > 1, one per conversation) has `:k` after the reader in its id.
   */
  private async readAll(event: ReadReceiptEvent, log: ReceiptLog): Promise<ReceiptNotice[]> {
    const seen = new Map<string, number>()
    const notices: ReceiptNotice[] = []
    for (const receipt of event.receipts) {
      const k = (seen.get(receipt.from.toLowerCase()) ?? 0) + 1
      seen.set(receipt.from.toLowerCase(), k)
      notices.push(await this.read(`receipt:${event.seq}:${receipt.from}${k > 1 ? `:${k}` : ''}`, receipt, log))
    }
    return notices
  }

  private async read(id: string, event: {from: string; ciphertext: string}, log: ReceiptLog): Promise<ReceiptNotice> {
    const notice = (messages: string[], verification: ReceiptNotice['verification']): ReceiptNotice => ({
      type: 'receipt',
      id,
      status: 'read',
      by: event.from,
      messages,
      verification,
    })
    const key = await this.session.key()
    const sender = await this.keys.forVerifying(event.from)
    let opened: {text: string; verification: Verification}
    try {
      // Sealed (what this client sends), or an OpenPGP message as clients before sealed receipts sent.
      if (!isSealedReceipt(event.ciphertext)) {
        opened = await decryptText({armored: event.ciphertext, key, senderPublicKey: sender?.publicKey ?? key.publicKey})
      } else if (sender) {
        opened = await openReceipt({sealed: event.ciphertext, key, readerPublicKey: sender.publicKey})
      } else {
        return notice([], {status: 'invalid', reason: `${event.from} has no public key on the server`})
      }
    } catch (error) {
      if (!(error instanceof CryptoError)) throw error
      return notice([], {status: 'undecryptable', reason: error.message})
    }
    const parsed = readReceipt.safeParse(safeJson(opened.text))
    if (!parsed.success) return notice([], {status: 'invalid', reason: 'not a FastChat read receipt'})
    const verification = judge(opened.verification, event.from, sender)
    const receipt = parsed.data
    if (!same(receipt.to, this.session.username)) return notice([], {status: 'invalid', reason: `written to ${receipt.to}, not to you`})
    const messages = receipt.messages.filter((id) => sentTo(log, id, event.from, receipt.conversation))
    return notice(messages, verification)
  }

  private queued: OpenedMessage[] = []
  /** When the last read receipts' request went (Date.now()). */
  private lastSentAt = Number.NEGATIVE_INFINITY
  private queueTimer: NodeJS.Timeout | undefined
  private flushing: Promise<void> = Promise.resolve()

  /**
   * acknowledge(), but for the pages shown within `delayMs` together: the
   * first page after a quiet spell (no request within `delayMs`) goes at
   * once, and after it a `listen` or a daemon in a busy conversation sends
   * one request every `delayMs` (one receipt per sender) instead of one per
   * page, and never more than one at a time: what is shown while a request
   * is on its way goes in the next, once it is answered (a server answers
   * once the receipts are committed, which in a busy conversation takes up
   * to its gathering window: a request every window, each waiting that long,
   * would queue up without end). flushQueued() sends what waits at once
   * (the end of `messages()`).
   */
  acknowledgeSoon(messages: OpenedMessage[], delayMs: number): void {
    if (messages.length === 0) return
    this.queued.push(...messages)
    // At once after a quiet spell (no request within `delayMs`), else `delayMs` after the last one.
    this.queueTimer ??= setTimeout(() => void this.flushQueued(), Math.max(0, this.lastSentAt + delayMs - Date.now()))
  }

  /** Sends the read receipts acknowledgeSoon() queued; never throws (failures are reported). */
  flushQueued(): Promise<void> {
    clearTimeout(this.queueTimer)
    this.queueTimer = undefined
    // Taken when the request before is done, not now: everything shown meanwhile shares this one.
    this.flushing = this.flushing.then(async () => {
      const messages = this.queued.splice(0)
      if (messages.length === 0) return
      this.lastSentAt = Date.now()
      await this.acknowledge(messages).catch((error: unknown) => this.report({type: 'receipts.failed', reason: (error as Error).message}))
    })
    return this.flushing
  }

  /**
   * After messages were shown: one read receipt per sender and conversation,
   * for the verified messages of others not answered yet, all in one request
   * (or one per RECEIPTS_PER_REQUEST_MAX). A receipt that cannot be sent is
   * reported, never thrown: showing messages must not fail for it.
   */
  async acknowledge(messages: OpenedMessage[]): Promise<void> {
    const log = await this.session.store.receipts()
    const answered = new Set(log.answered)
    const fresh = messages.filter((message) => !this.session.isMe(message.from) && !answered.has(message.id))
    if (fresh.length === 0) return
    const groups = new Map<string, {to: string; conversation: ReceiptConversation; ids: string[]}>()
    for (const message of fresh) {
      // Only to a sender whose key signed the message: the receipt is encrypted to that pinned key.
      if (message.verification.status !== 'valid') continue
      const conversation: ReceiptConversation = message.group ? {group: message.group.id, epoch: message.group.epoch} : {user: this.session.username}
      const key = `${message.from.toLowerCase()} ${JSON.stringify(conversation)}`
      let entry = groups.get(key)
      if (!entry) groups.set(key, (entry = {to: message.from, conversation, ids: []}))
      entry.ids.push(message.id)
    }
    try {
      const own = await this.session.key()
      const contacts = await this.session.store.contacts()
      const receipts: {to: string; ciphertext: string}[] = []
      for (const {to, conversation, ids} of groups.values()) {
        const pinned = contactOf(contacts, to)
        if (!pinned) continue
        const text = JSON.stringify({v: RECEIPT_VERSION, type: 'read', to, messages: ids.slice(0, MAX_IDS_PER_RECEIPT), conversation})
        receipts.push({to, ciphertext: await sealedOrSigned(text, own, pinned.publicKey)})
      }
      for (let i = 0; i < receipts.length; i += RECEIPTS_PER_REQUEST_MAX) {
        const part = receipts.slice(i, i + RECEIPTS_PER_REQUEST_MAX)
        await this.session.withFailover((api) => api.postReceipts({receipts: part}))
      }
      await this.session.store.updateReceipts((stored) => {
        stored.answered.push(...fresh.map((message) => message.id))
      })
    } catch (error) {
      this.report({type: 'receipts.failed', reason: (error as Error).message})
    }
  }

  /**
   * Takes in the receipts waiting in my stream after `cursor` (at most
   * CATCH_UP_PAGES pages), without acknowledging anything or moving the
   * stored cursor: what `history` does before it marks my messages, so its
   * ✓✓ does not wait for an `inbox` to have run.
   */
  async catchUp(cursor: number): Promise<void> {
    let since = cursor
    for (let page = 0; page < CATCH_UP_PAGES; page++) {
      const answer = await this.session.withFailover((api) => api.peekEvents(since, 0, 1_000))
      for (const event of answer.events) if (isReceiptEvent(event)) await this.open(event)
      if (answer.next <= since || answer.events.length === 0) return
      since = answer.next
    }
  }

  /**
   * Waits for a receipt of `status` (a read receipt also means delivered) for
   * my message `id`, reading my stream from `cursor` without acknowledging
   * anything or moving the stored cursor (ApiClient.peekEvents): the messages
   * it passes are still new for `inbox`. Undefined after `timeoutMs`.
   */
  async waitFor(id: string, status: 'delivered' | 'read', cursor: number, timeoutMs: number, signal?: AbortSignal): Promise<{status: 'delivered' | 'read'; by: string} | undefined> {
    const deadline = Date.now() + timeoutMs
    const found = (log: ReceiptLog) => {
      const read = Object.hasOwn(log.read, id) ? log.read[id]! : []
      if (read.length > 0) return {status: 'read' as const, by: read[0]!}
      const delivered = Object.hasOwn(log.delivered, id) ? log.delivered[id]! : []
      if (status === 'delivered' && delivered.length > 0) return {status: 'delivered' as const, by: delivered[0]!}
      return undefined
    }
    let since = cursor
    for (;;) {
      // Another reader of this profile (a `listen`) may have recorded it already.
      const known = found(await this.session.store.receipts())
      if (known) return known
      const remaining = deadline - Date.now()
      if (remaining <= 0 || signal?.aborted) return undefined
      const page = await this.session.withFailover((api) => api.peekEvents(since, Math.min(remaining, 30_000), 100, signal))
      // Waiting for `delivered` opens no read receipt: no passphrase is needed for it (the server's word is enough).
      for (const event of page.events) if (isReceiptEvent(event) && (status === 'read' || event.type === 'receipt.delivered')) await this.open(event)
      since = Math.max(since, page.next)
    }
  }
}

/**
 * Whether `id` is my message sent to `by` (1:1), or to the group a read
 * receipt names; for a delivered receipt of a group message, any member.
 */
function sentTo(log: ReceiptLog, id: string, by: string, conversation: ReceiptConversation | undefined): boolean {
  if (!Object.hasOwn(log.sent, id)) return false
  const to = log.sent[id]!
  if (to.startsWith('group:')) return conversation === undefined || ('group' in conversation && to === `group:${conversation.group}`)
  return same(to, by) && (conversation === undefined || ('user' in conversation && same(conversation.user, by)))
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}

/**
 * A read receipt to the owner of `to`: sealed (crypto/receipts.ts, ~200 bytes, where an OpenPGP message
 * takes ~700), or signed and encrypted with OpenPGP to a key without the Curve25519 subkey sealing needs.
 */
async function sealedOrSigned(text: string, own: UnlockedKey, to: string): Promise<string> {
  try {
    return await sealReceipt({text, reader: own, to})
  } catch (error) {
    if (!(error instanceof CryptoError) || error.code !== 'FC_BAD_KEY') throw error
    return encryptText({text, to: [to], signer: own})
  }
}
