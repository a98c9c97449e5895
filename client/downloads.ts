import {chmod, type FileHandle, mkdir, open, rm} from 'node:fs/promises'
import {join, resolve} from 'node:path'

import {FastChatError} from './errors.js'

/**
 * Saving received files. The name comes from the sender (inside the
 * encryption, but a sender can be hostile), so it is reduced to a plain base
 * name before it touches the file system, and an existing file is never
 * replaced: `photo.png`, then `photo (1).png`, `photo (2).png`...
 */

export const MAX_NAME_CHARS = 200
/** Most file systems allow 255 bytes per name; leave room for " (NNN)". */
const MAX_NAME_BYTES = 200
const FALLBACK_NAME = 'file'
/** Gives up after this many taken names rather than looping forever. */
const MAX_SUFFIX = 10_000

/**
 * C0 and C1 controls, DEL, and the invisible formatting characters that can
 * make a name look like another (bidirectional overrides: `gnp.exe` shown as
 * `exe.png`; zero-width characters; the BOM).
 */
// eslint-disable-next-line no-control-regex
const UNSAFE_CHARS = /[\u0000-\u001f\u007f-\u009f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]/g

/** A sender's file name made safe to create in a directory: never a path, never hidden, never empty. */
export function sanitizeFileName(name: string): string {
  let clean = name.replace(UNSAFE_CHARS, '')
  // Base name only, whichever separator the sender's system uses.
  clean = clean.slice(Math.max(clean.lastIndexOf('/'), clean.lastIndexOf('\\')) + 1)
  // No hidden files, no "." or "..", no names starting with spaces.
  clean = clean.replace(/^[\s.]+/, '').replace(/\s+$/, '')
  clean = truncate(clean)
  return clean === '' ? FALLBACK_NAME : clean
}

/** Cuts a long name to MAX_NAME_CHARS characters and MAX_NAME_BYTES bytes, keeping a short extension. */
function truncate(name: string): string {
  const fits = (text: string) => [...text].length <= MAX_NAME_CHARS && Buffer.byteLength(text, 'utf8') <= MAX_NAME_BYTES
  if (fits(name)) return name
  const {stem, ext} = splitExtension(name)
  const keep = ext.length <= 16 ? ext : ''
  const chars = [...(keep ? stem : name)]
  while (chars.length > 0 && !fits(chars.join('') + keep)) chars.pop()
  return (chars.join('').replace(/\s+$/, '') + keep).replace(/^[\s.]+/, '')
}

/** `photo.png` → {stem: 'photo', ext: '.png'}; a name without a dot (or only a leading one) has no extension. */
export function splitExtension(name: string): {stem: string; ext: string} {
  const dot = name.lastIndexOf('.')
  return dot > 0 ? {stem: name.slice(0, dot), ext: name.slice(dot)} : {stem: name, ext: ''}
}

/** `photo.png`, `photo (1).png`, ... */
export function numberedName(name: string, n: number): string {
  if (n === 0) return name
  const {stem, ext} = splitExtension(name)
  return `${stem} (${n})${ext}`
}

/** The directory for received files: --out, else `<profile>/downloads`. Created if missing (0700 when FastChat makes it). */
export async function prepareDownloadDir(profileDir: string, out?: string): Promise<string> {
  const dir = out ? resolve(out) : join(profileDir, 'downloads')
  try {
    const created = await mkdir(dir, {recursive: true, mode: 0o700})
    // Our own downloads directory is private like the profile; a --out directory that existed keeps its mode.
    if (created !== undefined || !out) await chmod(dir, 0o700)
  } catch (error) {
    throw new FastChatError('FC_SAVE_FAILED', `Cannot use ${dir} for received files: ${(error as Error).message}`, {dir}, {cause: error})
  }
  return dir
}

/**
 * Writes `data` as a new file named after `name` in `dir`, never replacing
 * anything: each candidate is created with O_EXCL ('wx'), which also refuses
 * a symlink planted under that name. The file is 0600. Returns its path.
 */
export async function saveUnique(dir: string, name: string, data: Uint8Array): Promise<string> {
  const safe = sanitizeFileName(name)
  for (let n = 0; n <= MAX_SUFFIX; n++) {
    const path = join(dir, numberedName(safe, n))
    let file: FileHandle
    try {
      file = await open(path, 'wx', 0o600)
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') continue
      throw cannotSave(path, error)
    }
    try {
      await file.writeFile(data)
      // The umask may have removed bits but never adds any; make it exactly 0600.
      await file.chmod(0o600)
      await file.close()
    } catch (error) {
      // Half-written (disk full): remove it; it is ours, created just now.
      await file.close().catch(() => undefined)
      await rm(path, {force: true})
      throw cannotSave(path, error)
    }
    return path
  }
  throw new FastChatError('FC_SAVE_FAILED', `Too many files named like ${safe} in ${dir}.`, {dir, name: safe})
}

const cannotSave = (path: string, error: unknown) =>
  new FastChatError('FC_SAVE_FAILED', `Cannot save ${path}: ${(error as Error).message}`, {path}, {cause: error})

/** 512 B, 12.3 KiB, 4.0 MiB. */
export function formatSize(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`
  const units = ['KiB', 'MiB', 'GiB', 'TiB']
  let value = bytes / 1024
  let unit = 0
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024
    unit++
  }
  return `${value.toFixed(1)} ${units[unit]}`
}
