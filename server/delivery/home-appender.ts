import {Counter, type Registry} from 'prom-client'

import type {AppendedEvent, EventToAppend} from '../../storage/repositories/event-stream.repository.js'
import type {ReceiptPublisher} from '../../storage/repositories/receipt.repository.js'
import type {EventAppender} from '../services/receipts.js'

/** The peers (PeerPush): where users listen, and appending there. */
export interface PeerAppender {
  locate(userIds: string[]): Promise<Map<string, string[]>>
  append(url: string, events: EventToAppend[]): Promise<void>
}

/**
 * Receipts' events appended by the server their recipient listens on
 * (docs/architecture.md, "Waking polls on other servers"). An event appended
 * here for a user who polls on a peer reaches that peer's listener after the
 * peer's own next commits to the same stream if its push is slow: the
 * listener then holds what follows for the gap's grace (50 ms) and reads the
 * stream back. So the events of a user who listens on exactly one other
 * server, and not here, are handed to that server, which appends them to the
 * stream it serves (POST /v1/cluster/events) and answers once committed;
 * everything else, and whatever a peer did not take, is appended here. On
 * either side they go through the server's ReceiptGatherer, so a user gets
 * the receipts of a window from all servers in one event of each kind.
 *
 * What is appended here goes to delivery (and the peers' pushes) the moment
 * its statement returns (the gatherer hands it over), not when the peers
 * have answered: an event held back while later commits to the same stream
 * are delivered is a gap for its listener. Resolves with the events
 * appended here once every part is committed. A peer that committed but
 * whose answer was lost gets them once more from here: a receipt twice is
 * harmless.
 */
export class HomeAppender implements ReceiptPublisher {
  private readonly routed: Counter<'where'>

  constructor(
    /** Appends here and hands the events to delivery as they commit (ReceiptGatherer). */
    private readonly local: EventAppender,
    private readonly peers: PeerAppender | undefined,
    /** Whether a user listened here lately (PresenceRecorder.isHere). */
    private readonly isHere: (userId: string) => boolean,
    registry?: Registry,
  ) {
    this.routed = new Counter({
      name: 'fastchat_server_receipt_events_total',
      help: "Receipts' events by where they were appended: here, by the peer their recipient listens on, or here after that peer failed",
      labelNames: ['where'] as const,
      registers: registry ? [registry] : [],
    })
  }

  async publish(events: EventToAppend[]): Promise<AppendedEvent[]> {
    if (events.length === 0) return []
    let where: Map<string, string[]> | undefined
    if (this.peers) {
      try {
        where = await this.peers.locate([...new Set(events.map((event) => event.recipientId))])
      } catch {
        where = undefined
      }
    }
    const here: EventToAppend[] = []
    const byPeer = new Map<string, EventToAppend[]>()
    for (const event of events) {
      const urls = where?.get(event.recipientId) ?? []
      if (urls.length !== 1 || event.unlessBlockedBy !== undefined || this.isHere(event.recipientId)) {
        here.push(event)
        continue
      }
      let list = byPeer.get(urls[0]!)
      if (!list) byPeer.set(urls[0]!, (list = []))
      list.push(event)
    }
    const peers = this.peers!
    const [appended, ...refused] = await Promise.all([
      this.appendHere(here, 'here'),
      ...[...byPeer].map(([url, list]) =>
        peers.append(url, list).then(
          () => (this.routed.inc({where: 'peer'}, list.length), [] as EventToAppend[]),
          () => list,
        ),
      ),
    ])
    const fallback = (refused as EventToAppend[][]).flat()
    return fallback.length === 0 ? (appended as AppendedEvent[]) : [...(appended as AppendedEvent[]), ...(await this.appendHere(fallback, 'fallback'))]
  }

  private async appendHere(events: EventToAppend[], where: 'here' | 'fallback'): Promise<AppendedEvent[]> {
    if (events.length === 0) return []
    const appended = await this.local.appendEvents(events)
    this.routed.inc({where}, events.length)
    return appended
  }
}
