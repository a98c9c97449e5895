import {randomBytes, scrypt, timingSafeEqual} from 'node:crypto'

import {UnavailableError} from './errors.js'

/**
 * scrypt (memory-hard, in Node's standard library) at N=2^17, r=8, p=1: the
 * OWASP minimum for scrypt. A hash takes 128·N·r = 128 MiB and about 370 ms
 * of one core here (docs/operations.md has the figures): slow for a guesser,
 * bearable once per login. The parameters are stored with each hash, and a
 * login that finds an older, cheaper hash replaces it.
 */
export const SCRYPT_COST = {N: 2 ** 17, r: 8, p: 1} as const
const KEY_BYTES = 32
const SALT_BYTES = 16

/**
 * What a stored hash may ask us to run: enough for today's cost and the next
 * step up (2^18, 256 MiB), and never more, whatever a row says.
 */
const N_MIN = 2 ** 10
const N_MAX = 2 ** 18
const R_MAX = 16
const P_MAX = 4
/** Node refuses scrypt above `maxmem`; it needs about 128·N·r bytes, so allow that with room to spare. */
const maxmemFor = (n: number, r: number) => 2 * 128 * n * r

export interface HashingLimits {
  /** Hashes computed at once by this process (each holds 128 MiB while it runs). */
  concurrency: number
  /**
   * Hashes that may wait for a free slot; beyond, 503 at once (the CLI then
   * tries another server). Keep the queue's work (maxWaiting × 0.4 s ÷
   * concurrency) under the CLI's 15 s request timeout.
   */
  maxWaiting: number
  /** The cost of new hashes; SCRYPT_COST unless configured (FASTCHAT_SCRYPT_LOG2_N). */
  cost?: {N: number; r: number; p: number}
}

export class HashingBusyError extends UnavailableError {
  constructor() {
    super('FC_SERVER_BUSY', 'This server is checking too many passwords at once; try again in a moment.', 1)
  }
}

export interface Verification {
  ok: boolean
  /** The password was right but the hash has older parameters than SCRYPT_COST: store a new one. */
  stale: boolean
}

/**
 * Hashes and checks passwords, at most `concurrency` at a time: a burst of
 * logins waits its turn instead of taking gigabytes of memory (and every
 * thread of libuv's pool, which file and DNS work also need).
 */
export class PasswordHasher {
  private running = 0
  private readonly waiting: (() => void)[] = []
  private hashes = 0
  private decoyHash: Promise<string> | undefined

  private readonly cost: {N: number; r: number; p: number}

  constructor(private readonly limits: HashingLimits) {
    this.cost = limits.cost ?? SCRYPT_COST
  }

  async hash(password: string): Promise<string> {
    const salt = randomBytes(SALT_BYTES)
    const {N, r, p} = this.cost
    const key = await this.derive(password, salt, N, r, p)
    return `scrypt$${N}$${r}$${p}$${salt.toString('base64')}$${key.toString('base64')}`
  }

  async verify(password: string, stored: string): Promise<Verification> {
    const [scheme, nText, rText, pText, salt, key, ...rest] = stored.split('$')
    const [n, r, p] = [Number(nText), Number(rText), Number(pText)]
    const usable =
      scheme === 'scrypt' && salt && key && rest.length === 0 &&
      Number.isInteger(n) && n >= N_MIN && n <= N_MAX && (n & (n - 1)) === 0 &&
      Number.isInteger(r) && r >= 1 && r <= R_MAX && Number.isInteger(p) && p >= 1 && p <= P_MAX
    if (!usable) return {ok: false, stale: false}
    const expected = Buffer.from(key, 'base64')
    const actual = await this.derive(password, Buffer.from(salt, 'base64'), n, r, p)
    const ok = actual.length === expected.length && timingSafeEqual(actual, expected)
    const current = n === this.cost.N && r === this.cost.r && p === this.cost.p
    return {ok, stale: ok && !current}
  }

  /** A hash of nothing at today's cost, checked when the user does not exist, so both failures take as long. */
  decoy(): Promise<string> {
    this.decoyHash ??= this.hash(randomBytes(16).toString('hex')).catch((error: unknown) => {
      this.decoyHash = undefined
      throw error
    })
    return this.decoyHash
  }

  stats(): {running: number; waiting: number; hashes: number} {
    return {running: this.running, waiting: this.waiting.length, hashes: this.hashes}
  }

  private async derive(password: string, salt: Buffer, n: number, r: number, p: number): Promise<Buffer> {
    await this.acquire()
    try {
      this.hashes++
      return await new Promise((resolve, reject) =>
        scrypt(password.normalize('NFC'), salt, KEY_BYTES, {N: n, r, p, maxmem: maxmemFor(n, r)}, (error, derived) =>
          error ? reject(error) : resolve(derived),
        ),
      )
    } finally {
      this.release()
    }
  }

  private acquire(): Promise<void> {
    if (this.running < this.limits.concurrency) {
      this.running++
      return Promise.resolve()
    }
    if (this.waiting.length >= this.limits.maxWaiting) return Promise.reject(new HashingBusyError())
    return new Promise((resolve) => this.waiting.push(resolve))
  }

  /** Hands the slot straight to the next waiter, if any (so `running` never drops and rises again). */
  private release(): void {
    const next = this.waiting.shift()
    if (next) next()
    else this.running--
  }
}

/** One hash made outside a server, at today's cost (benchmark set-up). */
export const hashPassword = (password: string): Promise<string> => new PasswordHasher({concurrency: 1, maxWaiting: 0}).hash(password)
