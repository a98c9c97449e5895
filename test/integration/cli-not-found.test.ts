import {expect} from 'chai'

import {expectOneLineError, runCli} from '../helpers/cli.js'

describe('fastchat with a mistyped command', () => {
  it('names the command probably meant, in one line, and exits 1', async () => {
    const result = await runCli(['sned', 'bob', 'lunch?'])
    expect(result.code).to.equal(1)
    expect(result.stdout).to.equal('')
    expectOneLineError(result, /^Error: fastchat has no command "sned"\. Hint: Did you mean `fastchat send`\?\n$/)
  })

  it('guesses within a topic', async () => {
    const result = await runCli(['keys', 'shwo', 'bob'])
    expect(result.code).to.equal(1)
    expectOneLineError(result, /no command "keys shwo"\. Hint: Did you mean `fastchat keys show`\?/)
  })

  it('points to --help when nothing is close', async () => {
    const unknown = await runCli(['xyzzy'])
    expect(unknown.code).to.equal(1)
    expectOneLineError(unknown, /no command "xyzzy"\. Hint: `fastchat --help` lists the commands\./)
    const inTopic = await runCli(['group', 'xyzzy'])
    expect(inTopic.code).to.equal(1)
    expectOneLineError(inTopic, /no command "group xyzzy"\. Hint: `fastchat group --help` lists its commands\./)
  })

  it('answers JSON with --json', async () => {
    const result = await runCli(['lsiten', '--json'])
    expect(result.code).to.equal(1)
    expect(JSON.parse(result.stdout)).to.deep.equal({
      error: {message: 'fastchat has no command "lsiten".', hint: 'Did you mean `fastchat listen`?', exit: 1, code: 'FC_USAGE'},
    })
  })
})
