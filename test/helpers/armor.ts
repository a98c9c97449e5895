import {expect} from 'chai'

import {CryptoError, type CryptoErrorCode} from '../../crypto/index.js'

/** Awaits `promise` and expects it to fail with a CryptoError of `code`. */
export async function expectCryptoError(promise: Promise<unknown>, code: CryptoErrorCode): Promise<CryptoError> {
  let result: unknown
  try {
    result = await promise
  } catch (error) {
    expect(error).to.be.instanceOf(CryptoError)
    expect((error as CryptoError).code, (error as Error).message).to.equal(code)
    return error as CryptoError
  }
  expect.fail(`expected CryptoError ${code}, got a result: ${JSON.stringify(result)?.slice(0, 200)}`)
}

// ASCII armor by hand (RFC 9580 section 6), so the tests can reach into a
// message's bytes without importing openpgp, which only crypto/ may do.
export function dearmor(armored: string): Buffer {
  const lines = armored.trim().split(/\r?\n/)
  const body = lines.slice(lines.indexOf('') + 1, -1).filter((line) => !line.startsWith('='))
  return Buffer.from(body.join(''), 'base64')
}

export function armor(bytes: Uint8Array, type: 'MESSAGE' | 'PUBLIC KEY BLOCK' = 'MESSAGE'): string {
  const base64 = Buffer.from(bytes).toString('base64').replace(/.{1,64}/g, '$&\n')
  const crc = crc24(bytes)
  const checksum = Buffer.from([crc >> 16, (crc >> 8) & 0xff, crc & 0xff]).toString('base64')
  return `-----BEGIN PGP ${type}-----\n\n${base64}=${checksum}\n-----END PGP ${type}-----\n`
}

function crc24(bytes: Uint8Array): number {
  let crc = 0xb704ce
  for (const byte of bytes) {
    crc ^= byte << 16
    for (let bit = 0; bit < 8; bit++) {
      crc <<= 1
      if (crc & 0x1000000) crc ^= 0x1864cfb
    }
  }
  return crc & 0xffffff
}

/** The bytes with one bit of the middle byte flipped: a tampered message. */
export function flipMiddleByte(bytes: Uint8Array): Uint8Array {
  const copy = Uint8Array.from(bytes)
  copy[copy.length >> 1]! ^= 0x01
  return copy
}
