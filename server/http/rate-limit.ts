import type {Request, RequestHandler, Response} from 'express'
import {RateLimiterMemory, RateLimiterRes} from 'rate-limiter-flexible'

import {AppError} from './errors.js'

export class RateLimitedError extends AppError {
  constructor(retryAfterSeconds: number, what: string) {
    super('FC_RATE_LIMITED', 429, 'Too many requests', `Too many ${what}; try again in ${retryAfterSeconds} s.`, {
      headers: {'Retry-After': String(retryAfterSeconds)},
      extensions: {retryAfter: retryAfterSeconds},
    })
  }
}

export interface Limit {
  /** Requests allowed per window. */
  points: number
  windowSeconds: number
  /** What the request is counted against: an account, an IP address. */
  key: (req: Request, res: Response) => string | undefined
}

/**
 * Fixed-window counters in this process's memory (rate-limiter-flexible), one
 * per limit; a request must pass every limit. Counters are per chat server, so
 * a client spreading requests over N servers gets N times the allowance
 * (docs/security.md). A refused request costs nothing else: it is answered
 * 429 with Retry-After before any work is done.
 */
export function rateLimit(what: string, limits: Limit[]): RequestHandler {
  const limiters = limits.map((limit) => ({limit, limiter: new RateLimiterMemory({points: limit.points, duration: limit.windowSeconds})}))
  return async (req, res, next) => {
    for (const {limit, limiter} of limiters) {
      const key = limit.key(req, res)
      if (key === undefined) continue
      try {
        await limiter.consume(key)
      } catch (error) {
        if (error instanceof RateLimiterRes) throw new RateLimitedError(Math.max(1, Math.ceil(error.msBeforeNext / 1000)), what)
        throw error
      }
    }
    next()
  }
}

/** The client's address; behind a proxy, Express derives it from X-Forwarded-For per FASTCHAT_TRUST_PROXY. */
export const byIp = (req: Request) => `ip:${req.ip ?? 'unknown'}`

export interface RateLimits {
  /** Logins per minute per account (per IP: 3 times as many). */
  loginsPerMinute: number
  /** Registrations per hour per IP address. */
  registrationsPerHour: number
  /** Messages, uploads and group changes per 10 s per account (per IP: 5 times as many). */
  sendsPer10s: number
}

export interface Limiters {
  login: RequestHandler
  register: RequestHandler
  send: RequestHandler
}

const pass: RequestHandler = (_req, _res, next) => next()

/** The route guards for `limits`, or guards that let everything through when limits are off. */
export function createLimiters(limits: RateLimits | undefined): Limiters {
  if (!limits) return {login: pass, register: pass, send: pass}
  const account = (_req: Request, res: Response) => (res.locals.user ? `user:${(res.locals.user as {userId: string}).userId}` : undefined)
  const claimedAccount = (req: Request) => {
    const name = (req.body as {username?: unknown} | undefined)?.username
    return typeof name === 'string' ? `name:${name.slice(0, 64).toLowerCase()}` : undefined
  }
  return {
    login: rateLimit('login attempts', [
      {points: limits.loginsPerMinute, windowSeconds: 60, key: claimedAccount},
      {points: limits.loginsPerMinute * 3, windowSeconds: 60, key: byIp},
    ]),
    register: rateLimit('registrations', [{points: limits.registrationsPerHour, windowSeconds: 3600, key: byIp}]),
    send: rateLimit('messages', [
      {points: limits.sendsPer10s, windowSeconds: 10, key: account},
      {points: limits.sendsPer10s * 5, windowSeconds: 10, key: byIp},
    ]),
  }
}
