/**
 * What the parked polls and streams need of a cancellation: whether it
 * happened, and to hear when it does. An AbortSignal is one; so is
 * ClientGone, which costs a tenth of one (an AbortSignal is an EventTarget
 * with two Maps and listener records: about 1 KiB for each of the 10,000
 * listeners a server may hold open).
 */
export interface Cancellation {
  readonly aborted: boolean
  addEventListener(type: 'abort', listener: () => void, options?: {once?: boolean}): void
  removeEventListener(type: 'abort', listener: () => void): void
}

/** Cancelled once, when the client goes away; its listeners run once. */
export class ClientGone implements Cancellation {
  aborted = false
  private listeners: (() => void)[] | undefined

  addEventListener(_type: 'abort', listener: () => void): void {
    if (this.aborted) return
    ;(this.listeners ??= []).push(listener)
  }

  removeEventListener(_type: 'abort', listener: () => void): void {
    const at = this.listeners?.indexOf(listener) ?? -1
    if (at >= 0) this.listeners!.splice(at, 1)
  }

  abort(): void {
    if (this.aborted) return
    this.aborted = true
    const listeners = this.listeners ?? []
    this.listeners = undefined
    for (const listener of listeners) listener()
  }
}
