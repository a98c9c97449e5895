import {CryptoError} from './errors.js'

/** "1a2b3c4d..." -> "1A2B 3C4D ...", the form people compare out loud. */
export function formatFingerprint(fpr: string): string {
  const hex = fpr.replace(/\s+/g, '').toUpperCase()
  if (!/^(?:[0-9A-F]{4})+$/.test(hex)) throw new CryptoError('FC_BAD_KEY', 'Not a hexadecimal key fingerprint.')
  return hex.match(/.{4}/g)!.join(' ')
}
