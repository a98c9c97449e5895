import {format} from 'node:util'

import {Command, Errors, Flags, type Interfaces} from '@oclif/core'

import {jsonText, multiLine, singleLine} from './display.js'
import {describeFailure} from './errors.js'
import {profileDirectory, ProfileStore} from '../../client/profile-store.js'
import {type DaemonClient, findDaemon} from '../../client/daemon/connection.js'
import {FastChatClient} from '../../client/fastchat-client.js'
import type {ReceiveFilesOptions} from '../../client/file-receive.js'
import type {Reporter} from '../../client/reports.js'
import {ChatSession} from '../../client/session.js'
import {formatReport} from './format.js'
import {readPassphrase} from './prompts.js'

export type BaseFlags<T extends typeof Command> = Interfaces.InferredFlags<(typeof BaseCommand)['baseFlags'] & T['flags']>
export type BaseArgs<T extends typeof Command> = Interfaces.InferredArgs<T['args']>

/**
 * What every user command shares (DESIGN.md section 6): `--json` (the typed
 * value `run()` returns), `--profile`, and errors as one line with a hint and
 * an exit code that tells the cause (./errors.ts).
 */
export abstract class BaseCommand<T extends typeof Command> extends Command {
  static override enableJsonFlag = true

  static override baseFlags = {
    profile: Flags.string({
      summary: 'Profile directory. Env: FASTCHAT_HOME. Default: $XDG_CONFIG_HOME/fastchat or ~/.config/fastchat.',
      helpGroup: 'GLOBAL',
    }),
  }

  protected flags!: BaseFlags<T>
  protected args!: BaseArgs<T>
  protected store!: ProfileStore

  public override async init(): Promise<void> {
    await super.init()
    const {args, flags} = await this.parse({
      flags: this.ctor.flags,
      baseFlags: (super.ctor as typeof BaseCommand).baseFlags,
      enableJsonFlag: this.ctor.enableJsonFlag,
      args: this.ctor.args,
      strict: this.ctor.strict,
    })
    this.flags = flags as BaseFlags<T>
    this.args = args as BaseArgs<T>
    this.store = new ProfileStore(profileDirectory(this.flags.profile))
  }

  protected openSession(): Promise<ChatSession> {
    return ChatSession.open(this.store, readPassphrase)
  }

  /**
   * The daemon of this profile when one runs (it holds the unlocked key: the
   * passphrase is not asked), else the client library on the profile.
   */
  protected async daemonOrClient(): Promise<FastChatClient | DaemonClient> {
    return (await findDaemon(this.store.dir, {onReport: (report) => this.note(formatReport(report))})) ?? this.openClient()
  }

  /** The client library on this profile; its reports (keys pinned, cursor resets...) become notes on stderr, unless `onReport` says otherwise. */
  protected openClient(files?: ReceiveFilesOptions, onReport: Reporter = (report) => this.note(formatReport(report))): Promise<FastChatClient> {
    return FastChatClient.open({store: this.store, passphrase: readPassphrase, onReport, files})
  }

  /** Notices and warnings that are not the command's output: stderr, and not at all with --json. One line each, whatever they quote. */
  protected note(line: string): void {
    if (!this.jsonEnabled()) process.stderr.write(`${singleLine(line)}\n`)
  }

  /**
   * Output lines. What commands print is already built with the sanitizer
   * (./display.ts); this passes it through once more, line by line, so that a
   * field someone forgot still cannot drive the terminal. It changes nothing
   * in text that is already safe.
   */
  public override log(message = '', ...args: unknown[]): void {
    super.log(multiLine(format(message, ...args), '').join('\n'))
  }

  /** --json output: the same JSON, with DEL, C1 controls and format characters written as \uXXXX (./display.ts). */
  public override logJson(json: unknown): void {
    process.stdout.write(`${jsonText(json, 2)}\n`)
  }

  protected override async catch(error: Error & {exitCode?: number}): Promise<unknown> {
    if (error instanceof Errors.ExitError) throw error
    const failure = describeFailure(error, this.id, this.store?.dir)
    if (this.jsonEnabled()) {
      this.logJson({error: failure})
    } else {
      process.stderr.write(`Error: ${singleLine(failure.message)}${failure.hint ? ` Hint: ${singleLine(failure.hint)}` : ''}\n`)
      if (process.env.DEBUG && error.stack) process.stderr.write(`${multiLine(error.stack, '').join('\n')}\n`)
    }
    // Already reported: ExitError makes oclif exit with the code and print nothing more.
    throw new Errors.ExitError(failure.exit)
  }
}
