/**
 * Resolves on the first SIGINT or SIGTERM. A second signal while shutting down
 * means "now": the process exits at once with the conventional 128+n code.
 *
 * A process started by `fastchat up` (FASTCHAT_EXIT_WITH_PARENT=1) also shuts
 * down when its stdin closes: that pipe is held by the parent, and the kernel
 * closes it however the parent dies, SIGKILL included. Orphans would otherwise
 * keep the cluster's ports and block the next `fastchat up`.
 */
export function untilShutdownSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const watchParent = process.env.FASTCHAT_EXIT_WITH_PARENT === '1'
    const done = (signal: NodeJS.Signals) => {
      // A resumed stdin would keep the event loop, and so the process, alive.
      if (watchParent) process.stdin.destroy()
      resolve(signal)
    }
    if (watchParent) {
      process.stdin.once('end', () => done('SIGHUP'))
      process.stdin.once('error', () => done('SIGHUP'))
      process.stdin.resume()
    }
    let received = false
    const onSignal = (signal: NodeJS.Signals) => {
      if (received) process.exit(signal === 'SIGINT' ? 130 : 143)
      received = true
      done(signal)
    }
    process.on('SIGINT', onSignal)
    process.on('SIGTERM', onSignal)
  })
}
