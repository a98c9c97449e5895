import type {Request, RequestHandler, Response} from 'express'
import {RateLimiterMemory, RateLimiterRes} from 'rate-limiter-flexible'

import {AppError} from '../services/errors.js'

export class RateLimitedError extends AppError<'FC_RATE_LIMITED'> {
  constructor(retryAfterSeconds: number, what: string) {
    super('FC_RATE_LIMITED', `Too many ${what}; try again in ${retryAfterSeconds} s.`, {
      retryAfterSeconds,
      extensions: {retryAfter: retryAfterSeconds},
    })
  }
}

const retryAfter = (ms: number) => Math.max(1, Math.ceil(ms / 1000))

export interface Limit {
  /** Points allowed per window; a request costs one, or what it turns out to cost (Guard.charge). */
  points: number
  windowSeconds: number
  /** What the request is counted against: an account, an IP address. */
  key: (req: Request, res: Response) => string | undefined
}

/** A route guard that can count more against the same limits once the request's real cost is known. */
export interface Guard extends RequestHandler {
  /**
   * Counts a request that costs `points` in all (the guard counted one when
   * it let the request in), at most a whole window's worth, so an operation
   * bigger than the allowance is still possible once per window. Throws
   * RateLimitedError, and the caller must then not go on with the work.
   */
  charge(req: Request, res: Response, points: number): Promise<void>
}

/**
 * Fixed-window counters in this process's memory (rate-limiter-flexible), one
 * per limit; a request must pass every limit. Counters are per chat server, so
 * a client spreading requests over N servers gets N times the allowance
 * (docs/security.md). A refused request costs nothing else: it is answered
 * 429 with Retry-After before any work is done.
 */
export function rateLimit(what: string, limits: Limit[]): Guard {
  const limiters = limits.map((limit) => ({limit, limiter: new RateLimiterMemory({points: limit.points, duration: limit.windowSeconds})}))
  const consume = async (req: Request, res: Response, points: (limit: Limit) => number) => {
    for (const {limit, limiter} of limiters) {
      const key = limit.key(req, res)
      const cost = points(limit)
      if (key === undefined || cost <= 0) continue
      try {
        await limiter.consume(key, cost)
      } catch (error) {
        if (error instanceof RateLimiterRes) throw new RateLimitedError(retryAfter(error.msBeforeNext), what)
        throw error
      }
    }
  }
  const guard: RequestHandler = async (req, res, next) => {
    await consume(req, res, () => 1)
    next()
  }
  return Object.assign(guard, {
    charge: (req: Request, res: Response, points: number) => consume(req, res, (limit) => Math.min(points, limit.points) - 1),
  })
}

/** The client's address; behind a proxy, Express derives it from X-Forwarded-For per FASTCHAT_TRUST_PROXY. */
export const byIp = (req: Request) => `ip:${req.ip ?? 'unknown'}`

export interface RateLimits {
  /** Password checks per minute per IP address, right or wrong. */
  loginsPerMinute: number
  /** Failed logins per (account, address) answered at once, before the backoff starts. */
  loginFreeFailures: number
  /** Longest backoff of an (account, address) pair. */
  loginBackoffMaxSeconds: number
  /** Failed logins per hour per address, over all accounts. */
  loginFailuresPerIpHour: number
  /** Registrations per hour per IP address. */
  registrationsPerHour: number
  /** Points per 10 s per account (per IP: 5 times as many): a message, upload or group change costs one per stream it reaches. */
  sendsPer10s: number
}

/**
 * Login brute-force protection, as rate-limiter-flexible's "login endpoint
 * protection" recipe has it: failures (not attempts) are counted per
 * (account, address) pair and per address, a success clears its pair, and a
 * locked pair or address is answered 429 before any password is hashed. So
 * a guesser cannot lock the owner out: the owner logs in from another
 * address (or from the same one once the backoff is over).
 */
export interface LoginGuard {
  /** Before the password is checked: 429 if the pair or the address may not try now. */
  check(req: Request, username: string): Promise<void>
  /** After a wrong password (or an unknown user: the same to a guesser). */
  failed(req: Request, username: string): Promise<void>
  succeeded(req: Request, username: string): Promise<void>
}

/** A pair's failures are forgotten this long after its first one (so memory holds at most an hour of them). */
const PAIR_WINDOW_SECONDS = 3600

export function loginGuard(limits: RateLimits): LoginGuard {
  const pairFailures = new RateLimiterMemory({keyPrefix: 'pair', points: Number.MAX_SAFE_INTEGER, duration: PAIR_WINDOW_SECONDS})
  // A pair in its backoff: blocked keys only (block() marks one as over its single point).
  const pairBackoff = new RateLimiterMemory({keyPrefix: 'backoff', points: 1, duration: 1})
  const ipFailures = new RateLimiterMemory({keyPrefix: 'ip-failures', points: limits.loginFailuresPerIpHour, duration: 3600})
  const ipChecks = new RateLimiterMemory({keyPrefix: 'ip-checks', points: limits.loginsPerMinute, duration: 60})
  const pairOf = (req: Request, username: string) => `${username.slice(0, 64).toLowerCase()}|${byIp(req)}`
  return {
    async check(req, username) {
      const [backoff, failures] = await Promise.all([pairBackoff.get(pairOf(req, username)), ipFailures.get(byIp(req))])
      if (backoff && backoff.consumedPoints > 1) throw new RateLimitedError(retryAfter(backoff.msBeforeNext), 'failed logins for this account from your address')
      if (failures && failures.consumedPoints >= limits.loginFailuresPerIpHour) {
        throw new RateLimitedError(retryAfter(failures.msBeforeNext), 'failed logins from your address')
      }
      // Only what reaches the password check is counted against the address's checks.
      try {
        await ipChecks.consume(byIp(req))
      } catch (error) {
        if (error instanceof RateLimiterRes) throw new RateLimitedError(retryAfter(error.msBeforeNext), 'login attempts from your address')
        throw error
      }
    },
    async failed(req, username) {
      const pair = pairOf(req, username)
      const [count] = await Promise.all([pairFailures.penalty(pair, 1), ipFailures.penalty(byIp(req), 1)])
      const beyond = count.consumedPoints - limits.loginFreeFailures
      if (beyond >= 0) await pairBackoff.block(pair, Math.min(limits.loginBackoffMaxSeconds, 2 ** Math.min(beyond, 30)))
    },
    async succeeded(req, username) {
      const pair = pairOf(req, username)
      // The address's failures stay: logging in to one's own account must not clear a spray at others.
      await Promise.all([pairFailures.delete(pair), pairBackoff.delete(pair)])
    },
  }
}

export interface Limiters {
  login: LoginGuard
  register: RequestHandler
  send: Guard
  /** POST /v1/devices/links (no account yet): per IP address. */
  deviceLinks: RequestHandler
  /** A new device's polls of its link: per IP address. */
  deviceLinkPolls: RequestHandler
  /** Reading and approving links: per account, so that codes cannot be tried in bulk. */
  deviceLinkLookups: RequestHandler
}

/** New device links per minute per IP address: a person links a device now and then, a retry or two included. */
const DEVICE_LINKS_PER_MINUTE = 10
/** Link polls per minute per IP address: a new device polls about once a second; a few at once behind one NAT. */
const DEVICE_LINK_POLLS_PER_MINUTE = 600
/** Links read or approved per minute per account: a person types a code or two; a code guesser is held to this. */
const DEVICE_LINK_LOOKUPS_PER_MINUTE = 20

const pass: Guard = Object.assign<RequestHandler, Pick<Guard, 'charge'>>((_req, _res, next) => next(), {charge: async () => undefined})
const noLoginLimits: LoginGuard = {check: async () => undefined, failed: async () => undefined, succeeded: async () => undefined}

/** The route guards for `limits`, or guards that let everything through when limits are off. */
export function createLimiters(limits: RateLimits | undefined): Limiters {
  if (!limits) return {login: noLoginLimits, register: pass, send: pass, deviceLinks: pass, deviceLinkPolls: pass, deviceLinkLookups: pass}
  const account = (_req: Request, res: Response) => (res.locals.user ? `user:${(res.locals.user as {userId: string}).userId}` : undefined)
  return {
    login: loginGuard(limits),
    register: rateLimit('registrations', [{points: limits.registrationsPerHour, windowSeconds: 3600, key: byIp}]),
    send: rateLimit('messages', [
      {points: limits.sendsPer10s, windowSeconds: 10, key: account},
      {points: limits.sendsPer10s * 5, windowSeconds: 10, key: byIp},
    ]),
    deviceLinks: rateLimit('device links', [{points: DEVICE_LINKS_PER_MINUTE, windowSeconds: 60, key: byIp}]),
    deviceLinkPolls: rateLimit('device link polls', [{points: DEVICE_LINK_POLLS_PER_MINUTE, windowSeconds: 60, key: byIp}]),
    deviceLinkLookups: rateLimit('device link lookups', [{points: DEVICE_LINK_LOOKUPS_PER_MINUTE, windowSeconds: 60, key: account}]),
  }
}
