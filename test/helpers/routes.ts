import pino from 'pino'

import {createApp} from '../../server/app.js'
import type {Delivery} from '../../server/delivery/delivery.js'
import type {Services} from '../../server/services/index.js'

interface Layer {
  route?: {path: string; methods: Record<string, boolean>}
  handle?: {stack?: Layer[]}
}

/**
 * Every "METHOD /path" a chat server answers, read from the Express app
 * itself (never called), so that a route added later cannot be missed by the
 * suites that must cover every route.
 */
export function chatServerRoutes(): string[] {
  const app = createApp({
    db: null as never,
    services: {accounts: {}, messages: {}, groups: {}, blobs: {}} as unknown as Services,
    delivery: {} as Delivery,
    logger: pino({level: 'silent'}),
    lifecycle: {draining: false},
    cluster: {secret: 'x'.repeat(16), appender: {} as never},
  }) as unknown as {router: {stack: Layer[]}}
  const routes: string[] = []
  const walk = (stack: Layer[]) => {
    for (const layer of stack) {
      if (layer.route) for (const method of Object.keys(layer.route.methods)) routes.push(`${method.toUpperCase()} ${layer.route.path}`)
      else if (layer.handle?.stack) walk(layer.handle.stack)
    }
  }
  walk(app.router.stack)
  return routes
}
