import {readFile} from 'node:fs/promises'

import {Args} from '@oclif/core'

import {CryptoError, formatFingerprint, readPublicKey, unlockPrivateKey} from '../../crypto/index.js'
import {BaseCommand} from '../_lib/base-command.js'
import {CliFailure, Exit} from '../_lib/errors.js'
import {profileHint} from '../../client/profile-store.js'
import {readPassphrase} from '../_lib/prompts.js'

export interface KeysImportResult {
  /** Lowercase hex. */
  fingerprint: string
  /** The names on the key. */
  userIds: string[]
  /** The profile's account, if it has one yet. */
  username: string | null
  profile: string
}

const PRIVATE_ARMOR = '-----BEGIN PGP PRIVATE KEY BLOCK-----'

export default class KeysImport extends BaseCommand<typeof KeysImport> {
  static override summary = 'Put a private key exported with `keys export --private` into this profile (a new machine).'
  static override description =
    'The key must unlock with its passphrase (FASTCHAT_PASSPHRASE or a prompt), and if the profile already names an account, ' +
    'it must be that account\'s key (else exit 4). The key files are written 0600; a key already in the profile is never replaced. ' +
    'In a profile without an account, `fastchat login <username>` comes next.'

  static override examples = [
    '<%= config.bin %> keys import alice.key.asc',
    '<%= config.bin %> keys import alice.key.asc --profile ./alice && <%= config.bin %> login alice --profile ./alice',
  ]

  static override args = {
    file: Args.string({description: 'The file written by `fastchat keys export --private --output FILE`.', required: true}),
  }

  async run(): Promise<KeysImportResult> {
    const {file} = this.args
    if (await this.store.privateKey()) {
      throw new CliFailure(`There is already a private key in ${this.store.dir}.`, Exit.input, 'Import into another --profile DIR; FastChat never overwrites a key.')
    }
    const armored = await readFile(file, 'utf8').catch((error: NodeJS.ErrnoException) => {
      throw new CliFailure(`Cannot read ${file} (${error.code ?? error.message}).`, Exit.input)
    })
    // Before asking for a passphrase: the likeliest mix-up is the public export.
    if (!armored.includes(PRIVATE_ARMOR)) {
      throw new CliFailure(`${file} is not a private key.`, Exit.input, 'Export it with `fastchat keys export --private --output FILE` on the machine that has it.')
    }
    const unlocked = await unlockPrivateKey(armored, await readPassphrase()).catch(unusable(file))
    const info = await readPublicKey(unlocked.publicKey).catch(unusable(file))

    const profile = await this.store.profile()
    if (profile?.fingerprint && profile.fingerprint !== info.fingerprint) {
      throw new CliFailure(
        `This key (${formatFingerprint(info.fingerprint)}) is not the key of ${profile.username} in this profile (${formatFingerprint(profile.fingerprint)}); nothing was imported.`,
        Exit.trust,
        `Import the key exported from ${profile.username}'s profile, or use another --profile DIR.`,
        'FC_KEY_MISMATCH',
      )
    }
    await this.store.saveKeys({privateKey: armored, publicKey: info.armored})

    const username = profile?.username ?? null
    this.log(`Imported the key pair of ${info.userIds.join(', ')} (${formatFingerprint(info.fingerprint)}) into ${this.store.dir}.`)
    if (!username) this.note(`Next: \`fastchat login <username>${profileHint(this.store.dir)}\`.`)
    return {fingerprint: info.fingerprint, userIds: info.userIds, username, profile: this.store.dir}
  }
}

/** A damaged or unusable key is the file's fault, not the profile's (errors.ts would say "the key files in this profile"). */
const unusable =
  (file: string) =>
  (error: unknown): never => {
    if (error instanceof CryptoError && error.code === 'FC_BAD_KEY') {
      throw new CliFailure(`${file} holds no usable private key: ${error.message}`, Exit.input, 'Export it again with `fastchat keys export --private --output FILE`.', 'FC_BAD_KEY')
    }
    throw error
  }
