import {randomBytes} from 'node:crypto'
import {performance} from 'node:perf_hooks'

import {decryptBytes, encryptBytes} from '../../crypto/index.js'
import {formatCryptoGroupsResult, runCryptoGroupsBench} from '../crypto-groups.js'
import type {Scenario} from '../lib/scenario.js'
import {median, round, table} from '../lib/stats.js'

/**
 * 5. Client-side crypto per message: 1:1 text, group text (2, 50, 200
 * members) and rekeying, from bench/crypto-groups.ts, plus a 5 MiB image
 * (encryptBytes to the recipient and oneself, signed; decryptBytes with
 * verification). No server involved.
 */
export const crypto: Scenario = async (context) => {
  const quick = context.options.quick
  const groups = await runCryptoGroupsBench({iterations: quick ? 5 : 200})

  const imageRuns = quick ? 1 : 7
  const image = randomBytes(5 * 1024 * 1024)
  const {alice, bob} = context.fixtures
  const to = [bob.publicKey, alice.publicKey]
  const encryptMs: number[] = []
  const decryptMs: number[] = []
  let encrypted = await encryptBytes({data: image, to, signer: alice.unlocked})
  await decryptBytes({data: encrypted, key: bob.unlocked, senderPublicKey: alice.publicKey})
  for (let i = 0; i < imageRuns; i++) {
    let start = performance.now()
    encrypted = await encryptBytes({data: image, to, signer: alice.unlocked})
    encryptMs.push(performance.now() - start)
    start = performance.now()
    const opened = await decryptBytes({data: encrypted, key: bob.unlocked, senderPublicKey: alice.publicKey})
    decryptMs.push(performance.now() - start)
    if (opened.verification.status !== 'valid') throw new Error(`image signature: ${opened.verification.status}`)
  }
  const one = groups.send.oneToOne
  const text = [
    table([
      ['per message', 'median ms', 'p95 ms', 'bytes'],
      ['1:1 text: encryptText (to + self), sign', one.ms.median, one.ms.p95, one.bytes],
      ['1:1 text: decryptText, verify', groups.receive.decryptOneToOneMs.median, groups.receive.decryptOneToOneMs.p95, ''],
      ...groups.send.groups.map((g) => [`group of ${g.members}: encryptGroupText, sign`, g.ms.median, g.ms.p95, g.bytes]),
      ['group: decryptGroupText, verify', groups.receive.decryptGroupMs.median, groups.receive.decryptGroupMs.p95, ''],
      [`5 MiB image: encryptBytes (to + self), sign (${imageRuns} runs)`, median(encryptMs), round(Math.max(...encryptMs)), encrypted.byteLength],
      [`5 MiB image: decryptBytes, verify (${imageRuns} runs)`, median(decryptMs), round(Math.max(...decryptMs)), ''],
    ]),
    '',
    'bench/crypto-groups.ts in full:',
    formatCryptoGroupsResult(groups),
  ].join('\n')
  return {
    text,
    data: {
      groups,
      image: {bytes: image.byteLength, encryptedBytes: encrypted.byteLength, runs: imageRuns, encryptMedianMs: median(encryptMs), decryptMedianMs: median(decryptMs), encryptMs, decryptMs},
    },
  }
}
