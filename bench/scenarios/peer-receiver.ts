import {performance} from 'node:perf_hooks'
import {parentPort, workerData} from 'node:worker_threads'

import {FastChatClient, isMessage, MemoryStore} from '../../client/index.js'

/**
 * The receiving client of scenario 10 (./peer.ts), in a worker thread of its
 * own: its decryption and verification run beside the sender's encryption, as
 * on two machines, not after it on one event loop. Told what to do by
 * messages; answers each, and reports every bench message it hands out with
 * the time (on the clock both threads share: timeOrigin + now).
 */
type Command = {cmd: 'inbox'} | {cmd: 'listen'; peer: boolean} | {cmd: 'stop'}

const {superserver, username, password, passphrase} = workerData as {superserver: string; username: string; password: string; passphrase: string}
const port = parentPort!
const now = () => performance.timeOrigin + performance.now()

const client = await FastChatClient.register({
  store: new MemoryStore(),
  username,
  password,
  superserver,
  passphrase: async () => passphrase,
  newPassphrase: async () => passphrase,
  onReport: (report) => {
    if (report.type === 'peer.listening') port.postMessage({type: 'listening', urls: report.urls})
  },
})
let stop: AbortController | undefined
let reading: Promise<void> | undefined

port.on('message', (command: Command) => {
  void (async () => {
    if (command.cmd === 'inbox') {
      for await (const _ of client.messages({follow: false})) void _
      port.postMessage({type: 'done'})
    } else if (command.cmd === 'listen') {
      stop = new AbortController()
      const options = {signal: stop.signal, transport: 'stream' as const, ...(command.peer ? {peer: {host: '127.0.0.1'}} : {})}
      reading = (async () => {
        for await (const item of client.messages(options)) {
          if (isMessage(item) && item.kind === 'text' && item.text?.startsWith('bench ')) port.postMessage({type: 'message', text: item.text, at: now(), via: item.via})
        }
      })().catch((error: unknown) => port.postMessage({type: 'error', message: (error as Error).message}))
      if (!command.peer) port.postMessage({type: 'listening', urls: []})
    } else {
      stop?.abort()
      await reading
      port.postMessage({type: 'done'})
    }
  })()
})
port.postMessage({type: 'ready', username: client.username})
