import {Args, Flags} from '@oclif/core'

import {encryptText} from '../crypto/index.js'
import {BaseCommand} from './_lib/base-command.js'
import {Directory} from '../client/directory.js'
import {singleLine} from './_lib/display.js'
import {formatSize} from '../client/downloads.js'
import {Exit} from './_lib/errors.js'
import {readFileToSend, sendFile, type SentFile} from '../client/file-send.js'
import {newBinding, packText} from '../client/message-content.js'
import {type GroupContent, sendToGroup} from '../client/group-send.js'
import type {GroupRef} from '../client/group-targets.js'
import type {MessageGroup} from '../client/opened.js'
import {progressFor} from './_lib/progress.js'
import {readStdinText} from './_lib/prompts.js'
import {assertTextFits} from '../client/text-limit.js'
import {firstUseNote, type KeyForSending} from '../client/trust.js'

export interface SendResult {
  id: string
  sentAt: string
  /** A username, or `group:<id>`. */
  to: string
  /** For a group: which, and the key epoch the message was encrypted under. */
  group?: MessageGroup
}

/** With --image: the file as sent (name and type travel encrypted; the server sees only the blob id and its size). */
export type SendFileResult = Omit<SentFile, 'to'> & {to: string; group?: MessageGroup; caption: boolean}

export default class Send extends BaseCommand<typeof Send> {
  static override summary = 'Send an end-to-end encrypted, signed text message, image or file to a user or a group.'
  static override description =
    "The message is encrypted on this machine to the recipient's key and your own (so that `history` can show it), and signed. " +
    'The first time you write to someone their key is pinned; if it changes later, nothing is sent until you check it with ' +
    '`fastchat keys verify`. A failed server is replaced by another one from the superserver, and the message is sent once. ' +
    "With --image FILE (any file, not only images) the file's name, type and bytes are encrypted together and uploaded, and the text, if any, is its caption. " +
    "To a group, the message is encrypted once under the group's current key (made first if the group has none) and signed. " +
    'The recipient is a group when it is a group id or #name, a user when it is @name; a bare name is the group of yours with that name, ' +
    'if any, else the user (and an error if it is both).'

  static override examples = [
    '<%= config.bin %> send bob "See you at noon"',
    'uptime | <%= config.bin %> send bob -',
    '<%= config.bin %> send bob --image photo.png "The view from here"',
    '<%= config.bin %> send "#friends" "Dinner at eight?"',
  ]

  static override args = {
    to: Args.string({description: 'The recipient: a user (or @user), or a group (its id, or #name).', required: true}),
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
    const caption = text.trim() === '' ? undefined : text

    const directory = new Directory(await this.openSession())
    const target = await directory.groups.target(this.args.to, directory.keys)
    if (target.kind === 'group') return this.toGroup(directory, target.group, file ? {kind: 'image', file, caption} : {kind: 'text', text})

    const session = directory.session
    const recipient = await directory.keys.forSending(target.username)
    this.notePinned([recipient])
    if (file) {
      const sent = await sendFile(session, {file, recipient, caption, progress: progressFor({json: this.jsonEnabled()})})
      this.log(`Sent ${singleLine(file.name)} (${formatSize(sent.size)}, ${singleLine(sent.type)}) to ${singleLine(recipient.username)} at ${sent.sentAt} (message ${sent.id}).`)
      return {...sent, caption: caption !== undefined}
    }
    const key = await session.key()
    const binding = newBinding({user: recipient.username})
    const ciphertext = await encryptText({text: packText(binding, text), to: [recipient.publicKey, key.publicKey], signer: key})
    assertTextFits(ciphertext, recipient.username)
    // One key for every try (the message's own signed id): a retry on another server after a lost answer stores nothing new.
    const sent = await session.withFailover((api) => api.send({to: {user: recipient.username}, kind: 'text', ciphertext}, binding.id))
    this.log(`Sent to ${singleLine(recipient.username)} at ${sent.sentAt} (message ${sent.id}).`)
    return {id: sent.id, sentAt: sent.sentAt, to: recipient.username}
  }

  private async toGroup(directory: Directory, ref: GroupRef, content: GroupContent): Promise<SendResult | SendFileResult> {
    const progress = progressFor({json: this.jsonEnabled()})
    const sent = await sendToGroup(directory.session, directory.keys, directory.groupKeys, ref.id, content.kind === 'image' ? {...content, progress} : content)
    this.notePinned(sent.pinned)
    const group = {id: sent.group.id, name: sent.group.name, epoch: sent.epoch}
    const where = `#${singleLine(group.name)} (${sent.group.members.length} members, key epoch ${group.epoch})`
    const base = {id: sent.id, sentAt: sent.sentAt, to: `group:${group.id}`, group}
    if (content.kind === 'text') {
      this.log(`Sent to ${where} at ${sent.sentAt} (message ${sent.id}).`)
      return base
    }
    const {file, caption} = content
    this.log(`Sent ${singleLine(file.name)} (${formatSize(file.data.byteLength)}, ${singleLine(file.type)}) to ${where} at ${sent.sentAt} (message ${sent.id}).`)
    return {...base, blob: sent.blob!, name: file.name, type: file.type, size: file.data.byteLength, caption: caption !== undefined}
  }

  private notePinned(keys: KeyForSending[]): void {
    for (const key of keys.filter((k) => k.firstUse)) this.note(firstUseNote(key))
  }
}
