/**
 * Answers every message it gets with the same text, end to end encrypted.
 *
 *   FASTCHAT_HOME=~/.config/echo FASTCHAT_PASSPHRASE=... npx tsx examples/echo-bot.ts
 *
 * The profile is one made with `fastchat register` (or `login`); Ctrl-C stops it.
 */
import {FastChatClient, isMessage, ProfileStore, profileDirectory} from 'fastchat/client'

const client = await FastChatClient.open({
  store: new ProfileStore(profileDirectory(undefined)),
  passphrase: async () => process.env.FASTCHAT_PASSPHRASE ?? '',
  onReport: (report) => console.error(JSON.stringify(report)),
})
const stop = new AbortController()
process.once('SIGINT', () => stop.abort())
process.once('SIGTERM', () => stop.abort())
console.error(`echo-bot: answering messages to ${client.username}`)

for await (const item of client.messages({signal: stop.signal})) {
  // Only text, only from others, only what verified: never answer a forgery, or ourselves.
  if (!isMessage(item) || item.kind !== 'text' || item.text === null || item.from === client.username) continue
  if (item.verification.status !== 'valid') continue
  const sent = await client.send(`@${item.from}`, item.text)
  console.log(JSON.stringify({echoed: item.id, to: item.from, id: sent.id}))
}
