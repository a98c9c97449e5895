import {createSocket} from 'node:dgram'
import {lookup} from 'node:dns/promises'
import {once} from 'node:events'
import {isIPv6} from 'node:net'
import {networkInterfaces} from 'node:os'

/**
 * The URL a chat server registers with the superserver, which hands it to
 * clients and to peer servers (docs/operations.md, "Each process on its own
 * host"). `--url` wins; a specific listen address is its own URL; a wildcard
 * (0.0.0.0, ::) is not an address anyone can dial, so the server advertises
 * the address its traffic to the superserver leaves from: the interface that
 * the superserver, and so the cluster, can reach it on. Without a superserver
 * it takes the machine's only non-loopback address, and refuses to guess
 * between several.
 */
export async function advertisedUrl(options: {port: number; host: string; publicUrl?: string; superserverUrl?: string}): Promise<string> {
  if (options.publicUrl) return options.publicUrl
  const address = isWildcard(options.host) ? await wildcardAddress(options.host, options.superserverUrl) : options.host
  return `http://${isIPv6(address) ? `[${address}]` : address}:${options.port}`
}

export const isWildcard = (host: string): boolean => host === '0.0.0.0' || host === '::' || host === '[::]'

/** 127.0.0.0/8, ::1, localhost: only this machine can dial it. */
export function isLoopbackHost(host: string): boolean {
  const bare = host.replace(/^\[|\]$/g, '').toLowerCase()
  return bare === 'localhost' || bare.endsWith('.localhost') || /^127\.\d+\.\d+\.\d+$/.test(bare) || bare === '::1' || /^::ffff:127\./.test(bare)
}

export class AdvertisedUrlError extends Error {}

async function wildcardAddress(host: string, superserverUrl: string | undefined): Promise<string> {
  if (superserverUrl) return routeSource(new URL(superserverUrl))
  const family = host === '0.0.0.0' ? ['IPv4'] : ['IPv4', 'IPv6']
  const candidates = Object.values(networkInterfaces())
    .flat()
    .filter((entry) => entry && !entry.internal && family.includes(entry.family) && !entry.address.startsWith('fe80:'))
    .map((entry) => entry!.address)
  const unique = [...new Set(candidates)]
  if (unique.length === 1) return unique[0]!
  if (unique.length === 0) return '127.0.0.1'
  throw new AdvertisedUrlError(
    `Listening on ${host} on a machine with several addresses (${unique.join(', ')}) and no superserver to tell which one peers reach: pass --url (FASTCHAT_PUBLIC_URL).`,
  )
}

/**
 * The local address the kernel would send from to reach `target`: a UDP
 * socket's connect() picks the route and the source address without sending
 * a packet.
 */
async function routeSource(target: URL): Promise<string> {
  const {address, family} = await lookup(target.hostname.replace(/^\[|\]$/g, ''))
  const socket = createSocket(family === 6 ? 'udp6' : 'udp4')
  try {
    socket.connect(Number(target.port) || (target.protocol === 'https:' ? 443 : 80), address)
    await once(socket, 'connect')
    return socket.address().address
  } catch (error) {
    throw new AdvertisedUrlError(`Cannot tell which address reaches the superserver ${target.origin} (${(error as Error).message}): pass --url (FASTCHAT_PUBLIC_URL).`)
  } finally {
    socket.close()
  }
}
