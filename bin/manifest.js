#!/usr/bin/env node
// Build step (after tsc): writes oclif.manifest.json, the commands' metadata,
// so that `fastchat` starts without importing every command file (and with
// them openpgp, TypeORM and Express) just to find the one it runs.
import {rm, writeFile} from 'node:fs/promises'
import {fileURLToPath} from 'node:url'

import {Config} from '@oclif/core'

const root = fileURLToPath(new URL('..', import.meta.url))
const file = new URL('../oclif.manifest.json', import.meta.url)
await rm(file, {force: true}) // or oclif would read the stale one
const config = await Config.load({root})
const plugin = config.getPluginsList().find((candidate) => candidate.isRoot)
if (!plugin || Object.keys(plugin.manifest.commands).length === 0) throw new Error('no commands found: run tsc first')
await writeFile(file, `${JSON.stringify(plugin.manifest)}\n`)
console.log(`oclif.manifest.json: ${Object.keys(plugin.manifest.commands).length} commands`)
