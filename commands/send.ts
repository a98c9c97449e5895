import {randomUUID} from 'node:crypto'

import {Args, Flags} from '@oclif/core'

import {encryptText, formatFingerprint} from '../crypto/index.js'
import {BaseCommand} from './_lib/base-command.js'
import {formatSize} from './_lib/downloads.js'
import {Exit} from './_lib/errors.js'
import {readFileToSend, sendFile, type SentFile} from './_lib/file-send.js'
import {progressFor} from './_lib/progress.js'
import {readStdinText} from './_lib/prompts.js'
import {KeyDirectory} from './_lib/trust.js'

export interface SendResult {
  id: string
  sentAt: string
  to: string
}

/** With --image: the file as sent (name and type travel encrypted; the server sees only the blob id and its size). */
export type SendFileResult = SentFile & {caption: boolean}

export default class Send extends BaseCommand<typeof Send> {
  static override summary = 'Send an end-to-end encrypted, signed text message, image or file to a user.'
  static override description =
    "The message is encrypted on this machine to the recipient's key and your own (so that `history` can show it), and signed. " +
    'The first time you write to someone their key is pinned; if it changes later, nothing is sent until you check it with ' +
    '`fastchat keys verify`. A failed server is replaced by another one from the superserver, and the message is sent once. ' +
    'With --image FILE (any file, not only images) the file\'s name, type and bytes are encrypted together and uploaded, and the text, if any, is its caption.'

  static override examples = [
    '<%= config.bin %> send bob "See you at noon"',
    'uptime | <%= config.bin %> send bob -',
    '<%= config.bin %> send bob --image photo.png "The view from here"',
  ]

  static override args = {
    user: Args.string({description: 'The recipient.', required: true}),
    text: Args.string({description: 'The message (with --image: an optional caption); `-` reads it from stdin.'}),
  }

  static override flags = {
    image: Flags.string({summary: 'Send this file (an image or any other file), encrypted; the text becomes its caption.', helpValue: 'FILE'}),
  }

  async run(): Promise<SendResult | SendFileResult> {
    const {image} = this.flags
    const raw = this.args.text === '-' ? (await readStdinText()).replace(/\r?\n$/, '') : this.args.text
    if (raw === undefined && !image) this.error('Missing the message text.', {exit: Exit.input, suggestions: ['Pass the text (or `-` to read stdin), or --image FILE.']})
    const text = raw ?? ''
    if (text.trim() === '' && !image) this.error('The message is empty.', {exit: Exit.input})
    // Before any network: a wrong path is the most likely mistake.
    const file = image ? await readFileToSend(image) : undefined

    const session = await this.openSession()
    const recipient = await new KeyDirectory(session).forSending(this.args.user)
    if (recipient.firstUse) {
      this.note(
        `Pinned ${recipient.username}'s key ${formatFingerprint(recipient.fingerprint)} (first use). ` +
          `Compare it with ${recipient.username} and run \`fastchat keys verify ${recipient.username} --fingerprint ...\`.`,
      )
    }
    if (file) {
      const caption = text.trim() === '' ? undefined : text
      const sent = await sendFile(session, {file, recipient, caption, progress: progressFor({json: this.jsonEnabled()})})
      this.log(`Sent ${file.name} (${formatSize(sent.size)}, ${sent.type}) to ${recipient.username} at ${sent.sentAt} (message ${sent.id}).`)
      return {...sent, caption: caption !== undefined}
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
