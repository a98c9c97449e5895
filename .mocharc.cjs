// Mocha's configuration (`npm test`). With --parallel each of the two workers takes
// the next file of `spec` when it is free, so the longest files go first and the
// short ones fill in at the end (longest processing time first): in alphabetical
// order a long file started last ran alone at the end while the other worker idled.
// LONGEST_FIRST is ordered by the files' test time in a CI run (7 Dec: cli 128 s ...
// daemon 32 s); a file missing from it simply runs in alphabetical order after them.
const {readdirSync} = require('node:fs')

const LONGEST_FIRST = [
  'cli', 'cli-groups', 'hostile-server', 'peer-direct', 'chaos', 'devices', 'cli-everyday', 'hostile-display',
  'peer-path', 'accounts', 'cli-files', 'up', 'receipts', 'up-data-and-logs', 'daemon', 'cli-accounts',
  'multi-host', 'client-library', 'presence', 'fuzz', 'event-stream', 'readme-tour', 'faults',
].map((name) => `test/integration/${name}.test.ts`)

const testsIn = (dir) => readdirSync(dir, {recursive: true}).filter((name) => name.endsWith('.test.ts')).sort().map((name) => `${dir}/${name}`)
const integration = testsIn('test/integration')

module.exports = {
  spec: [
    ...LONGEST_FIRST.filter((file) => integration.includes(file)),
    ...integration.filter((file) => !LONGEST_FIRST.includes(file)),
    ...testsIn('test/unit'),
  ],
  'node-option': ['import=tsx', 'no-warnings=ExperimentalWarning'],
  require: ['test/setup.ts'],
  'forbid-only': true,
  timeout: 30000,
  reporter: 'spec',
  parallel: true,
  jobs: 2,
}
