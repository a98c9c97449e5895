import {Args, Flags} from '@oclif/core'

import {formatFingerprint, normalizeFingerprint} from '../../crypto/index.js'
import {BaseCommand} from '../_lib/base-command.js'
import {Exit} from '../_lib/errors.js'
import {KeyDirectory} from '../../client/trust.js'

export interface KeysVerifyResult {
  username: string
  /** Lowercase hex; null if nothing was pinned before. */
  pinned: string | null
  current: string
  changed: boolean
  /** Whether the pinned key is now marked as compared with its owner. */
  verified: boolean
  /** Whether the server's current key is now the pinned one. */
  accepted: boolean
}

export default class KeysVerify extends BaseCommand<typeof KeysVerify> {
  static override summary = "Compare a contact's pinned key with the one the server has now; mark it verified or accept a new one."
  static override description =
    'Read the fingerprint to each other over another channel (in person, a call). --fingerprint with the one they read out marks the key ' +
    "verified, or fails with exit code 4 if it does not match. After a key change, --accept pins the server's new key."

  static override examples = [
    '<%= config.bin %> keys verify bob',
    '<%= config.bin %> keys verify bob --fingerprint "1A2B 3C4D ..."',
    '<%= config.bin %> keys verify bob --accept',
  ]

  static override args = {
    user: Args.string({description: 'The contact.', required: true}),
  }

  static override flags = {
    fingerprint: Flags.string({summary: 'The fingerprint the contact told you (spaces and case do not matter).'}),
    accept: Flags.boolean({summary: "Pin the server's current key, replacing a changed one."}),
  }

  async run(): Promise<KeysVerifyResult> {
    const keys = new KeyDirectory(await this.openSession())
    const current = await keys.requireCurrent(this.args.user)
    const username = current.username
    const pinned = await keys.pinned(username)
    const changed = pinned !== undefined && (pinned.fingerprint !== current.fingerprint || pinned.changedTo !== undefined)
    this.log(`${username}'s key`)
    this.log(`  pinned  ${pinned ? formatFingerprint(pinned.fingerprint) : '(none)'}${pinned?.verified ? '  ✔ verified' : ''}`)
    this.log(`  server  ${formatFingerprint(current.fingerprint)}${changed ? '  ✘ CHANGED' : ''}`)
    if (pinned?.changedTo && pinned.changedTo !== current.fingerprint) this.log(`  seen    ${formatFingerprint(pinned.changedTo)}  ✘ shown by the server earlier instead of the pinned key`)
    const result = {username, pinned: pinned?.fingerprint ?? null, current: current.fingerprint, changed, verified: pinned?.verified ?? false, accepted: false}

    if (this.flags.fingerprint !== undefined) {
      if (normalizeFingerprint(this.flags.fingerprint) !== current.fingerprint) {
        this.error(`The fingerprint you gave does not match ${username}'s key on the server; nothing was changed.`, {
          exit: Exit.trust,
          code: 'FC_KEY_MISMATCH',
          suggestions: [`Do not trust messages from ${username} until you find out why.`],
        })
      }
      // Checked with its owner: as good as (better than) --accept.
      await keys.replacePin(current, true)
      this.log(`${username}'s key is verified and pinned.`)
      return {...result, verified: true, accepted: true}
    }
    if (this.flags.accept || !pinned) {
      if (this.flags.accept) await keys.replacePin(current, false)
      else await keys.pinFirstUse(current, 'sent')
      this.log(this.flags.accept ? `Pinned ${username}'s current key.` : `Pinned ${username}'s key (first use). Compare it with ${username}, then pass --fingerprint.`)
      return {...result, verified: false, accepted: true}
    }
    if (changed) {
      this.error(`${username}'s key has changed since you pinned it.`, {
        exit: Exit.trust,
        code: 'FC_KEY_CHANGED',
        suggestions: [`Compare the new fingerprint with ${username}, then run \`fastchat keys verify ${username} --accept\` (or --fingerprint).`],
      })
    }
    if (!pinned.verified) this.log(`Not verified yet: compare the fingerprint with ${username}, then run \`fastchat keys verify ${username} --fingerprint ...\`.`)
    return result
  }
}
