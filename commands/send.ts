import {randomUUID} from 'node:crypto'

import {Args} from '@oclif/core'

import {encryptText, formatFingerprint} from '../crypto/index.js'
import {BaseCommand} from './_lib/base-command.js'
import {Exit} from './_lib/errors.js'
import {readStdinText} from './_lib/prompts.js'
import {KeyDirectory} from './_lib/trust.js'

export interface SendResult {
  id: string
  sentAt: string
  to: string
}

export default class Send extends BaseCommand<typeof Send> {
  static override summary = 'Send an end-to-end encrypted, signed text message to a user.'
  static override description =
    "The message is encrypted on this machine to the recipient's key and your own (so that `history` can show it), and signed. " +
    'The first time you write to someone their key is pinned; if it changes later, nothing is sent until you check it with ' +
    '`fastchat keys verify`. A failed server is replaced by another one from the superserver, and the message is sent once.'

  static override examples = ['<%= config.bin %> send bob "See you at noon"', 'uptime | <%= config.bin %> send bob -']

  static override args = {
    user: Args.string({description: 'The recipient.', required: true}),
    text: Args.string({description: 'The message; `-` reads it from stdin.', required: true}),
  }

  async run(): Promise<SendResult> {
    const text = this.args.text === '-' ? (await readStdinText()).replace(/\r?\n$/, '') : this.args.text
    if (text.trim() === '') this.error('The message is empty.', {exit: Exit.input})

    const session = await this.openSession()
    const recipient = await new KeyDirectory(session).forSending(this.args.user)
    if (recipient.firstUse) {
      this.note(
        `Pinned ${recipient.username}'s key ${formatFingerprint(recipient.fingerprint)} (first use). ` +
          `Compare it with ${recipient.username} and run \`fastchat keys verify ${recipient.username} --fingerprint ...\`.`,
      )
    }
    const key = await session.key()
    const ciphertext = await encryptText({text, to: [recipient.publicKey, key.publicKey], signer: key})
    // One key for every try: a retry on another server after a lost answer stores nothing new.
    const idempotencyKey = randomUUID()
    const sent = await session.withFailover((api) => api.send({to: {user: recipient.username}, kind: 'text', ciphertext}, idempotencyKey))
    this.log(`Sent to ${recipient.username} at ${sent.sentAt} (message ${sent.id}).`)
    return {id: sent.id, sentAt: sent.sentAt, to: recipient.username}
  }
}
