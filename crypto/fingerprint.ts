import {CryptoError} from './errors.js'

/** "1a2b3c4d..." -> "1A2B 3C4D ...", the form people compare out loud. */
export function formatFingerprint(fpr: string): string {
  const hex = fpr.replace(/\s+/g, '').toUpperCase()
  if (!/^(?:[0-9A-F]{4})+$/.test(hex)) throw new CryptoError('FC_BAD_KEY', 'Not a hexadecimal key fingerprint.')
  return hex.match(/.{4}/g)!.join(' ')
}

/** A fingerprint as someone typed or read it ("1A2B 3C4D …") in the form keys carry: lowercase hex, no spaces. */
export function normalizeFingerprint(fpr: string): string {
  return fpr.replace(/\s+/g, '').toLowerCase()
}
