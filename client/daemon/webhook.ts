import {setTimeout as sleep} from 'node:timers/promises'

import {request} from 'undici'

import type {Received} from '../fastchat-client.js'
import type {ReceiveFilesOptions} from '../file-receive.js'
import type {Feed} from './feed.js'

/**
 * `fastchat daemon --webhook URL`: follows the profile's stored cursor and
 * POSTs each message and group event to URL as JSON, until it answers 2xx.
 * At least once: the cursor moves only after every item of a page was
 * accepted, so a crash or a stop in between posts the page again. Each post
 * carries the item's id as its Idempotency-Key for the receiver to dedupe.
 */

/** Between tries: quick for a receiver that restarts, at most a minute for one that is down for long. */
const RETRY_START_MS = 1_000
const RETRY_MAX_MS = 60_000
/** A receiver that takes longer than this to answer is taken as failed, and asked again. */
const ANSWER_TIMEOUT_MS = 30_000

export interface WebhookOptions {
  url: string
  files?: ReceiveFilesOptions
  signal: AbortSignal
  /** A line for the daemon's log: a post that failed, a report. */
  log: (line: string) => void
}

export async function runWebhook(feed: Feed, options: WebhookOptions): Promise<void> {
  const {signal} = options
  await feed.follow(
    {files: options.files, signal},
    async (page) => {
      for (const item of page.items) await postUntilAccepted(item, options)
      return !signal.aborted
    },
    // What came directly (daemon --peer) is posted the same way.
    (item) => postUntilAccepted(item, options).then(
      () => true,
      () => false,
    ),
  )
}

/** The event name a webhook post (and a stream event) carries: `message`, or the group event's type. */
export const eventName = (item: Received): string => ('kind' in item ? 'message' : item.type)

async function postUntilAccepted(item: Received, options: WebhookOptions): Promise<void> {
  const {url, signal, log} = options
  const body = JSON.stringify(item)
  for (let wait = RETRY_START_MS; ; wait = Math.min(wait * 2, RETRY_MAX_MS)) {
    let failure: string
    try {
      const answer = await request(url, {
        method: 'POST',
        headers: {'content-type': 'application/json', 'idempotency-key': item.id, 'x-fastchat-event': eventName(item)},
        body,
        signal,
        headersTimeout: ANSWER_TIMEOUT_MS,
        bodyTimeout: ANSWER_TIMEOUT_MS,
      })
      await answer.body.dump()
      if (answer.statusCode >= 200 && answer.statusCode < 300) return
      failure = `answered ${answer.statusCode}`
    } catch (error) {
      if (signal.aborted) throw error
      failure = `failed (${(error as Error).message})`
    }
    log(`Webhook ${url} ${failure} for ${item.id}; retrying in ${wait / 1000} s.`)
    await sleep(wait, undefined, {signal})
  }
}
