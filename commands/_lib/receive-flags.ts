import {Flags} from '@oclif/core'

import {prepareDownloadDir} from '../../client/downloads.js'
import type {ReceiveFilesOptions} from '../../client/file-receive.js'
import type {ProgressFactory} from './progress.js'

/**
 * What `inbox` and `listen` save unasked (docs/cli.md "Files"): files from
 * contacts you chose (you wrote to them, or verified or trusted their key)
 * up to a size you set. A stranger's file, or a larger one, is listed with
 * its caption and fetched with `--download` (or `history NAME --download`).
 */

/** The server's default upload limit: unasked, nothing larger than what a server normally takes. */
export const DEFAULT_AUTO_DOWNLOAD_MIB = 25
/** The envelope header and OpenPGP's packets around a file. */
const OVERHEAD_BYTES = 64 * 1024

export const receiveFlags = {
  out: Flags.directory({summary: 'Save received files here instead of <profile>/downloads.', helpValue: 'DIR'}),
  download: Flags.boolean({summary: 'Save every file, from anyone and of any size (up to 512 MiB), not only those from your contacts.', default: false}),
  'max-download': Flags.integer({
    summary: 'Without --download, save files from your contacts up to this many MiB (0: none).',
    default: DEFAULT_AUTO_DOWNLOAD_MIB,
    min: 0,
    max: 512,
    helpValue: 'MIB',
  }),
}

/** --no-read-receipts (and --read-receipts): this run only; without either, the profile's setting (`fastchat config read-receipts`). */
export const readReceiptsFlag = {
  'read-receipts': Flags.boolean({
    summary: 'Send read receipts for the messages shown (--no-read-receipts: send none); default: the profile setting, `fastchat config read-receipts`.',
    allowNo: true,
  }),
}

export function receiveFilesOptions(
  profileDir: string,
  flags: {out?: string; download: boolean; 'max-download': number},
  progress: ProgressFactory,
): ReceiveFilesOptions {
  const automatic = flags.download ? undefined : {maxBytes: flags['max-download'] === 0 ? 0 : flags['max-download'] * 1024 * 1024 + OVERHEAD_BYTES}
  return {dir: () => prepareDownloadDir(profileDir, flags.out), progress, ...(automatic ? {automatic} : {})}
}
