#!/usr/bin/env node
// oclif checks the running Node against its own package's engines with semver
// at every start (~30 ms of a command's start-up); npm checks ours at install.
process.env.OCLIF_DISABLE_ENGINE_WARNING ??= 'true'
const {execute} = await import('@oclif/core')

await execute({dir: import.meta.url})
