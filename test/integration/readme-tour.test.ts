import {type ChildProcess, execFile, spawn} from 'node:child_process'
import {once} from 'node:events'
import {mkdtemp, readFile, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'

import {expect} from 'chai'

import type {RunningChatServer} from '../../server/main.js'
import type {RunningSuperserver} from '../../superserver/main.js'
import {startTestServer, startTestSuperserver, waitForHealthy} from '../helpers/cluster.js'
import {freshDatabase} from '../helpers/database.js'
import {cliOnPath} from '../helpers/documented.js'
import {eventually} from '../helpers/processes.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))

/** A `$ ` line of the tour and the lines printed under it: `…` stands for lines left out, a last `^C` for Ctrl-C. */
interface Step {
  command: string
  output: string[]
}

/** The console blocks of the README's "A short tour", exactly as a reader would type them. */
async function tour(): Promise<Step[]> {
  const readme = await readFile(join(ROOT, 'README.md'), 'utf8')
  const section = /^## A short tour\n([\s\S]*?)^## /m.exec(readme)?.[1]
  if (!section) throw new Error('README.md has no "## A short tour" section')
  const steps: Step[] = []
  for (const [, block] of section.matchAll(/```console\n([\s\S]*?)```/g)) {
    for (const line of block!.trimEnd().split('\n')) {
      if (line.startsWith('$ ')) steps.push({command: line.slice(2), output: []})
      else steps.at(-1)?.output.push(line)
    }
  }
  return steps
}

/** What may differ between the README and a run: the times, and the home directory that `~` stands for. */
const normalize = (line: string, home: string) => line.replace(/\[\d{4}-\d\d-\d\dT[\d:.]+Z\]/g, '[time]').replaceAll(home, '~')

/** The documented lines, in order, among what was printed (`…` lines skipped). */
function expectPrinted(step: Step, stdout: string, home: string): void {
  const printed = stdout.split('\n').map((line) => normalize(line, home))
  let at = 0
  for (const line of step.output.filter((l) => l !== '…' && l !== '^C')) {
    const found = printed.indexOf(normalize(line, home), at)
    expect(found, `\`${step.command}\` printed:\n${stdout}\nnot, in this order, the README's line:\n${line}`).to.be.greaterThan(-1)
    at = found + 1
  }
}

describe("the README's tour", function () {
  this.timeout(60_000)
  let superserver: RunningSuperserver
  const servers: RunningChatServer[] = []
  const dirs: string[] = []
  let env: NodeJS.ProcessEnv
  let home: string

  before(async () => {
    // A fresh cluster (its own database: the tour's names are taken in the suite's), as `npm start` makes;
    // on free ports, so FASTCHAT_SUPERSERVER points the CLI at it.
    const database = {DATABASE_URL: await freshDatabase('tour', {migrated: true})}
    superserver = await startTestSuperserver(database)
    servers.push(await startTestServer(superserver.url, database), await startTestServer(superserver.url, database))
    await waitForHealthy(superserver.url, servers.map((s) => s.url))
    home = await mkdtemp(join(tmpdir(), 'fc-tour-home-'))
    const bin = await cliOnPath()
    dirs.push(home, bin)
    // A new user's shell: `fastchat` on PATH (npm link), and the answers to register's prompts from the variables the README names.
    env = {...process.env, HOME: home, PATH: `${bin}:${process.env.PATH}`, FASTCHAT_SUPERSERVER: superserver.url}
    Object.assign(env, {FASTCHAT_PASSWORD: 'a password for the tour', FASTCHAT_PASSPHRASE: 'a passphrase for the tour'})
    for (const name of ['FASTCHAT_HOME', 'XDG_CONFIG_HOME', 'DEBUG']) delete env[name]
  })
  after(async () => {
    await Promise.all(servers.map((s) => s.close()))
    await superserver?.close()
    for (const dir of dirs.splice(0)) await rm(dir, {recursive: true, force: true})
  })

  /** One command in bash, in the checkout, as typed. */
  async function runStep(step: Step): Promise<void> {
    const {code, stdout, stderr} = await new Promise<{code: number; stdout: string; stderr: string}>((resolve) => {
      execFile('bash', ['-c', step.command], {cwd: ROOT, env}, (error, stdout, stderr) =>
        resolve({code: error ? ((error as {code?: number}).code ?? 1) : 0, stdout, stderr}),
      )
    })
    expect(code, `\`${step.command}\` exited ${code}:\n${stdout}${stderr}`).to.equal(0)
    expectPrinted(step, stdout, home)
  }

  /** A command that runs until Ctrl-C: Ctrl-C (SIGINT to its process group) once it printed what the README shows. */
  async function runUntilCtrlC(step: Step): Promise<void> {
    const child: ChildProcess = spawn('bash', ['-c', step.command], {cwd: ROOT, env, detached: true, stdio: ['ignore', 'pipe', 'pipe']})
    let stdout = ''
    let stderr = ''
    child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()))
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
    const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>
    try {
      const last = normalize(step.output.at(-2) ?? '', home)
      await eventually(async () => child.exitCode !== null || stdout.split('\n').some((line) => normalize(line, home) === last), `\`${step.command}\` to print ${last}`)
      expect(child.exitCode, `\`${step.command}\` exited early:\n${stdout}${stderr}`).to.equal(null)
      expectPrinted(step, stdout, home)
      process.kill(-child.pid!, 'SIGINT')
      const [code] = await exited
      expect(code, `\`${step.command}\` after Ctrl-C:\n${stdout}${stderr}`).to.equal(0)
    } finally {
      if (child.exitCode === null && child.signalCode === null) process.kill(-child.pid!, 'SIGKILL')
    }
  }

  it('runs as written: every command succeeds and prints what the README shows', async () => {
    const steps = await tour()
    expect(steps[0]?.command).to.equal('npm start') // the cluster this test started stands in for it
    const commands = steps.slice(1)
    expect(commands.map((s) => s.command.split(' ').slice(0, 2).join(' '))).to.include.members(['fastchat register', 'fastchat listen'])
    for (const step of commands) {
      if (step.output.at(-1) === '^C') await runUntilCtrlC(step)
      else await runStep(step)
    }
  })
})
