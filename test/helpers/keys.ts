import {readFile} from 'node:fs/promises'

import {readPublicKey, unlockPrivateKey, type UnlockedKey} from '../../crypto/index.js'

/** The passphrase of every private key in fixtures/keys (see its README). */
export const FIXTURE_PASSPHRASE = 'correct horse battery staple'

export type FixtureName = 'alice' | 'bob' | 'carol' | 'mallory'

export interface FixtureKey {
  publicKey: string
  privateKey: string
  unlocked: UnlockedKey
  fingerprint: string
}

// Unlocking runs the S2K function; do it once per user per test run.
const loaded = new Map<FixtureName, Promise<FixtureKey>>()

/** A test user's key pair from fixtures/keys, public and private armored, plus the unlocked handle. */
export function loadFixtureKey(name: FixtureName): Promise<FixtureKey> {
  let key = loaded.get(name)
  if (!key) {
    key = load(name)
    loaded.set(name, key)
    // A failed load (missing file) should fail again next time, not stay cached.
    key.catch(() => loaded.delete(name))
  }
  return key
}

async function load(name: FixtureName): Promise<FixtureKey> {
  const folder = new URL('../../fixtures/keys/', import.meta.url)
  const publicKey = await readFile(new URL(`${name}.pub.asc`, folder), 'utf8')
  const privateKey = await readFile(new URL(`${name}.key.asc`, folder), 'utf8')
  const unlocked = await unlockPrivateKey(privateKey, FIXTURE_PASSPHRASE)
  const {fingerprint} = await readPublicKey(publicKey)
  return {publicKey, privateKey, unlocked, fingerprint}
}
