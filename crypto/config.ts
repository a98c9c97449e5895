import {config as openpgpDefaults, enums, type Config, type PartialConfig} from 'openpgp'

/**
 * The openpgp settings every call in this module passes explicitly, so that
 * nothing depends on (or can be weakened through) openpgp's mutable global
 * `config`. Most values restate openpgp 6 defaults on purpose: they are the
 * security-relevant ones, and a future default change should be a visible diff.
 */
export const OPENPGP_CONFIG: Readonly<PartialConfig> = Object.freeze({
  // v4 keys and SEIPDv1 (MDC) messages: what GnuPG 2.2/2.4 read. v6 keys and
  // AEAD (SEIPDv2) would lock out every gpg user before 2.5.
  v6Keys: false,
  aeadProtect: false,
  preferredSymmetricAlgorithm: enums.symmetric.aes256,
  preferredHashAlgorithm: enums.hash.sha512,
  // We never compress (compression before encryption leaks length
  // information and is a decompression-bomb vector)...
  preferredCompressionAlgorithm: enums.compression.uncompressed,
  // ...but other senders (gpg compresses by default) may, so cap what we are
  // willing to inflate in memory.
  maxDecompressedMessageSize: 256 * 1024 * 1024,
  // Never hand out plaintext that failed its integrity check.
  allowUnauthenticatedMessages: false,
  allowUnauthenticatedStream: false,
  allowInsecureDecryptionWithSigningKeys: false,
  allowInsecureVerificationWithReformattedKeys: false,
  // Reject malformed input instead of skipping over it.
  ignoreMalformedPackets: false,
  enforceGrammar: true,
  // Weak algorithms (openpgp 6 defaults).
  minRSABits: 2047,
  rejectHashAlgorithms: new Set([enums.hash.md5, enums.hash.ripemd]),
  rejectMessageHashAlgorithms: new Set([enums.hash.md5, enums.hash.ripemd, enums.hash.sha1]),
  rejectPublicKeyAlgorithms: new Set([enums.publicKey.elgamal, enums.publicKey.dsa]),
  rejectCurves: new Set([enums.curve.secp256k1]),
})

/**
 * The same settings as a complete Config, for the key methods (getEncryptionKey,
 * verifyPrimaryKey...) that take one rather than a partial override. Taken
 * from openpgp's defaults once, at load, before anything could change them.
 */
export const FULL_CONFIG: Readonly<Config> = Object.freeze({...openpgpDefaults, ...OPENPGP_CONFIG})
