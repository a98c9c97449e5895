/**
 * libpq's multi-host connection URIs, which node-pg does not take:
 * `postgres://user:pass@h1:5432,h2:5433/db?target_session_attrs=read-write`
 * (https://www.postgresql.org/docs/current/libpq-connect.html#LIBPQ-MULTIPLE-HOSTS).
 * This only splits the host list off; each host gets back a single-host URL
 * that node-pg parses as it always does (user, password, database, sslmode,
 * application_name and the other parameters, untouched). Routing to the host
 * that accepts writes is in ./pg-client.ts.
 */

/** Which server a new connection may stay on (libpq's names; the standby-seeking ones are of no use to a writer). */
export type TargetSessionAttrs = 'any' | 'read-write' | 'primary'
const TARGET_SESSION_ATTRS: readonly TargetSessionAttrs[] = ['any', 'read-write', 'primary']

export interface PgHost {
  /** Host name, IP address (IPv6 without brackets) or socket directory, percent-decoded. */
  host: string
  port: number
}

export interface DatabaseTarget {
  hosts: PgHost[]
  /** As written, else `read-write` for several hosts (a chat server writes), `any` for one (as node-pg). */
  targetSessionAttrs: TargetSessionAttrs
  /** Whether a new connection must be routed (several hosts, or a target other than `any`); if not, `url` goes to node-pg as it is. */
  routed: boolean
  /** A single-host URL for node-pg: this one with `host` as its only host and without target_session_attrs. */
  urlFor(host: PgHost): string
}

export class DatabaseUrlError extends Error {}

const DEFAULT_PORT = 5432
const SCHEME = /^(postgres(?:ql)?:\/\/)/i

/** Splits a postgres:// URL around its host list, as libpq does: userinfo ends at the first `@`, the host list at `/` or `?`. */
function split(url: string): {scheme: string; userinfo: string; hostlist: string; rest: string} {
  const scheme = SCHEME.exec(url)?.[1]
  if (!scheme) throw new DatabaseUrlError('the database URL must start with postgres:// or postgresql://')
  const afterScheme = url.slice(scheme.length)
  const authorityEnd = afterScheme.search(/[/?#]/)
  const authority = authorityEnd === -1 ? afterScheme : afterScheme.slice(0, authorityEnd)
  const at = authority.indexOf('@')
  return {
    scheme,
    userinfo: at === -1 ? '' : authority.slice(0, at + 1),
    hostlist: at === -1 ? authority : authority.slice(at + 1),
    rest: authorityEnd === -1 ? '' : afterScheme.slice(authorityEnd),
  }
}

function decode(text: string): string {
  try {
    return decodeURIComponent(text)
  } catch {
    throw new DatabaseUrlError('the database URL has a malformed percent-encoding in its host list')
  }
}

function parseHost(entry: string): PgHost {
  let host: string
  let port: string | undefined
  if (entry.startsWith('[')) {
    const close = entry.indexOf(']')
    if (close === -1) throw new DatabaseUrlError('the database URL has an IPv6 address without its closing bracket')
    host = entry.slice(1, close)
    const after = entry.slice(close + 1)
    if (after !== '' && !after.startsWith(':')) throw new DatabaseUrlError('the database URL has text after an IPv6 address')
    port = after === '' ? undefined : after.slice(1)
  } else {
    const colon = entry.lastIndexOf(':')
    host = colon === -1 ? entry : entry.slice(0, colon)
    port = colon === -1 ? undefined : entry.slice(colon + 1)
  }
  if (host === '') throw new DatabaseUrlError('the database URL has an empty host in its host list')
  if (port !== undefined && port !== '' && !/^\d{1,5}$/.test(port)) throw new DatabaseUrlError('the database URL has a port that is not a number')
  const number = port ? Number(port) : DEFAULT_PORT
  if (number < 1 || number > 65_535) throw new DatabaseUrlError('the database URL has a port out of range')
  return {host: decode(host), port: number}
}

function formatHost({host, port}: PgHost): string {
  const name = host.includes(':') ? `[${host.replaceAll('%', '%25')}]` : host.startsWith('/') ? encodeURIComponent(host) : host
  return `${name}:${port}`
}

/** The query string without its target_session_attrs parameters, and their last value. */
function takeTargetSessionAttrs(rest: string): {rest: string; value: string | undefined} {
  const query = rest.indexOf('?')
  if (query === -1) return {rest, value: undefined}
  const hash = rest.indexOf('#', query)
  const end = hash === -1 ? rest.length : hash
  let value: string | undefined
  const kept = rest
    .slice(query + 1, end)
    .split('&')
    .filter((pair) => {
      const [name = '', ...raw] = pair.split('=')
      if (decode(name) !== 'target_session_attrs') return true
      value = decode(raw.join('='))
      return false
    })
    .filter((pair) => pair !== '')
  return {rest: rest.slice(0, query) + (kept.length ? `?${kept.join('&')}` : '') + rest.slice(end), value}
}

/**
 * Parses a PostgreSQL URL with one host or several. Throws DatabaseUrlError
 * (whose message never repeats the URL: it may hold a password) when it
 * cannot be used.
 */
export function parseDatabaseUrl(url: string): DatabaseTarget {
  // What node-pg reads besides URLs (a socket path, socket:...) goes to it as it is.
  if (!SCHEME.test(url)) return {hosts: [], targetSessionAttrs: 'any', routed: false, urlFor: () => url}
  const {scheme, userinfo, hostlist, rest: withParameters} = split(url)
  const {rest, value} = takeTargetSessionAttrs(withParameters)
  if (/(?:^|[?&])(?:host|hostaddr|port)=[^&#]*(?:,|%2C)/i.test(rest)) {
    throw new DatabaseUrlError('write several hosts in the host list of the database URL (h1:5432,h2:5432), not in its host or port parameter')
  }
  const several = hostlist.includes(',')
  if (value !== undefined && !(TARGET_SESSION_ATTRS as readonly string[]).includes(value)) {
    throw new DatabaseUrlError(`target_session_attrs must be one of ${TARGET_SESSION_ATTRS.join(', ')}`)
  }
  const targetSessionAttrs = (value as TargetSessionAttrs | undefined) ?? (several ? 'read-write' : 'any')
  if (!several) {
    // One host (or none: a socket given by parameter, or node-pg's defaults): node-pg reads it as ever,
    // and says what it makes of it; a target to check needs a host we understand.
    const routed = targetSessionAttrs !== 'any' && hostlist !== ''
    let hosts: PgHost[] = []
    try {
      hosts = hostlist === '' ? [] : [parseHost(hostlist)]
    } catch (error) {
      if (routed) throw error
    }
    const single = scheme + userinfo + hostlist + rest
    return {hosts, targetSessionAttrs, routed, urlFor: () => single}
  }
  const hosts = hostlist.split(',').map(parseHost)
  return {hosts, targetSessionAttrs, routed: true, urlFor: (host) => scheme + userinfo + formatHost(host) + rest}
}

/** The URL with its password masked, for logs and banners; undefined if it is not a postgres:// URL. */
export function redactMultiHostUrl(url: string): string | undefined {
  try {
    const {scheme, userinfo, hostlist, rest} = split(url)
    const colon = userinfo.indexOf(':')
    const masked = rest.replace(/([?&]password=)[^&#]*/gi, '$1***')
    return scheme + (colon === -1 ? userinfo : `${userinfo.slice(0, colon)}:***@`) + hostlist + masked
  } catch {
    return undefined
  }
}
