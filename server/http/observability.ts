import type {RequestHandler} from 'express'
import type {Logger} from 'pino'
import {collectDefaultMetrics, Counter, Histogram, Registry} from 'prom-client'

/**
 * One Prometheus registry per app instance (not prom-client's global), so that
 * several apps in one test process keep separate figures.
 */
export interface HttpMetrics {
  registry: Registry
  requests: Counter<'method' | 'route' | 'status'>
  duration: Histogram<'method' | 'route'>
}

export function createHttpMetrics(prefix: string): HttpMetrics {
  const registry = new Registry()
  collectDefaultMetrics({register: registry, prefix: `${prefix}_`})
  const requests = new Counter({
    name: `${prefix}_http_requests_total`,
    help: 'HTTP requests answered, by route template and status',
    labelNames: ['method', 'route', 'status'] as const,
    registers: [registry],
  })
  const duration = new Histogram({
    name: `${prefix}_http_request_duration_seconds`,
    help: 'Time to answer an HTTP request (long-polls included), by route template',
    labelNames: ['method', 'route'] as const,
    // Long-polls last up to 60 s, so the upper buckets reach that far.
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30, 60],
    registers: [registry],
  })
  return {registry, requests, duration}
}

/** Logs one line per request and records it in the metrics; never logs headers or bodies. */
export function requestObserver(logger: Logger, metrics: HttpMetrics): RequestHandler {
  return (req, res, next) => {
    const started = process.hrtime.bigint()
    res.on('finish', () => {
      const seconds = Number(process.hrtime.bigint() - started) / 1e9
      // The route template keeps label cardinality bounded (no usernames or ids).
      const route = (req.route?.path as string | undefined) ? `${req.baseUrl}${req.route.path}` : 'unmatched'
      metrics.requests.inc({method: req.method, route, status: String(res.statusCode)})
      metrics.duration.observe({method: req.method, route}, seconds)
      // 503 is an expected state (draining, database restarting), not a bug.
      const level = res.statusCode === 503 ? 'warn' : res.statusCode >= 500 ? 'error' : 'debug'
      logger[level]({method: req.method, route, status: res.statusCode, ms: Math.round(seconds * 1000)}, 'request')
    })
    next()
  }
}
