/**
 * The FastChat client library: `import {FastChatClient} from 'fastchat/client'`.
 * Everything a program needs to chat end to end encrypted; nothing of the CLI
 * (no oclif, no terminal, no exit codes). See docs/client.md.
 */
export {
  type AccountOptions,
  checkPassword,
  checkUsername,
  type ClientOptions,
  FastChatClient,
  isMessage,
  type MessagesOptions,
  type Received,
  type RegisterOptions,
  type Sent,
  type SentFileResult,
} from './fastchat-client.js'
export {ApiError, NetworkError, ProtocolError} from './api-client.js'
export type {Transport, TransportMode} from './event-stream.js'
export {codeOf, FastChatError} from './errors.js'
export type {GroupNotice} from './group-events.js'
export {isGroupNotice, isPresenceNotice} from './event-sync.js'
export type {PresenceNotice} from './presence-events.js'
export type {MyPresence, PresenceEntry, PresenceState} from '../protocol/presence.js'
export {isReceiptNotice, type ReceiptNotice} from './receipts.js'
export type {ReceiptLog} from './store.js'
export type {MessageGroup, MessageVerification} from './opened.js'
export type {ReceiveFilesOptions} from './file-receive.js'
export type {OpenedFile, OpenedMessage, OpenedText} from './receive.js'
export type {Progress, ProgressFactory} from './progress.js'
export {profileDirectory, ProfileStore} from './profile-store.js'
export type {Report, Reporter} from './reports.js'
export type {PassphraseProvider} from './session.js'
export {type Contact, type Contacts, MemoryStore, type Profile, type Store, type SyncState} from './store.js'
