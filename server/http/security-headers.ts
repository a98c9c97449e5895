import type {RequestHandler} from 'express'
import helmet from 'helmet'

/**
 * The headers helmet puts on an answer (its defaults never depend on the
 * request), computed once: every answer, fast path or Express, carries the
 * same, and a request pays one loop instead of helmet's eleven middlewares.
 */
export function securityHeaders(): Record<string, string> {
  const headers: Record<string, string> = {}
  const res = {
    setHeader: (name: string, value: unknown) => (headers[name.toLowerCase()] = String(value)),
    removeHeader: (name: string) => delete headers[name.toLowerCase()],
  }
  helmet()({} as never, res as never, () => undefined)
  return headers
}

/** Express middleware setting securityHeaders() on every answer. */
export function withSecurityHeaders(): RequestHandler {
  const entries = Object.entries(securityHeaders())
  return (_req, res, next) => {
    for (const [name, value] of entries) res.setHeader(name, value)
    next()
  }
}
