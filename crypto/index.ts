/**
 * FastChat's cryptography: the only module that imports openpgp. Everything
 * else deals in armored strings, byte arrays, fingerprints and opaque
 * UnlockedKey handles, and never sees an openpgp object.
 */
export {CryptoError, type CryptoErrorCode} from './errors.js'
export {
  formatFingerprint,
  normalizeFingerprint,
  generateKeyPair,
  readPublicKey,
  unlockPrivateKey,
  type GeneratedKeyPair,
  type PublicKeyInfo,
  type UnlockedKey,
} from './keys.js'
export {decryptBytes, decryptText, encryptBytes, encryptText, type Verification} from './messages.js'
export {
  decryptGroupBytes,
  decryptGroupText,
  encryptGroupBytes,
  encryptGroupText,
  generateGroupKey,
  unwrapGroupKey,
  wrapGroupKey,
  type GroupKey,
} from './groups.js'
export {isSealedReceipt, openReceipt, sealReceipt, SEALED_RECEIPT_PREFIX} from './receipts.js'
export {generateOneTimeKey, openLinkCheck, sameFingerprint, sealLinkCheck, type OneTimeKey} from './devices.js'
