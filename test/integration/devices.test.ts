import {expect} from 'chai'

import {encryptText, generateOneTimeKey, sealLinkCheck} from '../../crypto/index.js'
import {FastChatClient} from '../../client/fastchat-client.js'
import {ProfileStore} from '../../client/profile-store.js'
import {MemoryStore, type Store} from '../../client/store.js'
import {PENDING_LINKS_MAX} from '../../server/services/devices.js'
import {DeviceLinkRepository} from '../../storage/repositories/device-link.repository.js'
import {type CliUser, CliUser as User, PASSPHRASE, spawnCli, startTwoUserCluster, stopTwoUserCluster, type TwoUserCluster} from '../helpers/cli.js'
import {fakeCiphertext, PASSWORD} from '../helpers/api.js'
import {http} from '../helpers/http.js'
import {MaliciousProxy} from '../helpers/malicious-proxy.js'
import {eventually} from '../helpers/processes.js'

/*
 * Issue 16: several devices per person. A second (and third) device of alice
 * is linked through the CLI; both read what bob sends, each reads what the
 * other sent, and a revoked one is refused by both chat servers. Then the
 * failures a person makes (a mistyped, unknown, expired or reused code) and
 * the attacks a server or another account could try.
 */

const passphrase = async () => PASSPHRASE

/** `fastchat device link` in the background: its code, once printed, and its end. */
async function startLinking(device: CliUser, name: string) {
  const run = spawnCli(['device', 'link', '--name', name], device.env())
  const exited = new Promise<number>((resolve) => run.child.on('exit', (code) => resolve(code ?? 128)))
  const code = await eventually(async () => /^Code: (\S+)$/m.exec(run.stdout())?.[1], `a code from device link (stderr: ${run.stderr()})`, 20_000)
  return {code, exited, stdout: run.stdout, stderr: run.stderr}
}

/** A copy of `user`'s profile in memory, its server replaced by `server` (a proxy). */
async function profileCopy(user: CliUser, server?: string): Promise<Store> {
  const disk = new ProfileStore(user.home)
  const store = new MemoryStore()
  const profile = (await disk.profile())!
  await store.saveProfile(server ? {...profile, server, superserver: server} : profile)
  await store.saveKeys(await disk.requireKeys())
  return store
}

const token = async (user: CliUser) => (await new ProfileStore(user.home).profile())!.token!
const me = (server: string, bearer: string) => http('GET', `${server}/v1/me`, {headers: {authorization: `Bearer ${bearer}`}})

describe('devices: one account on several devices (issue 16)', function () {
  this.timeout(90_000)
  let cluster: TwoUserCluster
  let alice: CliUser
  let laptop: CliUser
  let phone: CliUser

  before(async () => {
    cluster = await startTwoUserCluster()
    alice = cluster.alice
    laptop = await User.named(alice.username, cluster.superserver.url)
    phone = await User.named(alice.username, cluster.superserver.url)
  })

  after(async () => {
    await stopTwoUserCluster(cluster ?? {})
  })

  it('links a new device through the CLI: the code printed there, approved here', async () => {
    // alice has pinned bob's key (by writing to him): the new device gets the pin with the key.
    expect((await alice.run(['send', cluster.bob.username, 'before the laptop'])).code).to.equal(0)
    const linking = await startLinking(laptop, 'laptop')
    expect(linking.code).to.match(/^[0-9A-HJKMNP-TV-Z]{6}-[0-9A-HJKMNP-TV-Z]{6}$/)
    const approved = await alice.run(['device', 'approve', linking.code])
    expect(approved.code, approved.stderr).to.equal(0)
    expect(approved.stdout).to.contain('Approved laptop.')
    expect(await linking.exited, linking.stderr()).to.equal(0)
    expect(linking.stdout()).to.contain(`Linked as ${alice.username} (device laptop).`)
    // The same identity key, and a session of its own.
    const [mine, its] = [await new ProfileStore(alice.home).profile(), await new ProfileStore(laptop.home).profile()]
    expect(its!.fingerprint).to.equal(mine!.fingerprint)
    expect(its!.token).to.be.a('string').and.not.equal(mine!.token)
    const pins = await new ProfileStore(laptop.home).contacts()
    expect(Object.keys(pins)).to.deep.equal([cluster.bob.username.toLowerCase()])
    expect(pins[cluster.bob.username.toLowerCase()]).to.deep.equal((await new ProfileStore(alice.home).contacts())[cluster.bob.username.toLowerCase()])
  })

  it('a code used twice: the second approval gets 409, and a second poll too', async () => {
    const pending = await FastChatClient.startLink({store: new MemoryStore(), superserver: cluster.superserver.url, name: 'twice', passphrase})
    const first = await alice.run(['device', 'approve', pending.code])
    expect(first.code, first.stderr).to.equal(0)
    const again = await alice.run(['device', 'approve', pending.code])
    expect(again.code).to.equal(1)
    expect(again.stderr).to.match(/already approved/)
    const linked = await pending.waitForApproval()
    expect(linked.username).to.equal(alice.username)
    // Its session was handed out once: the link answers 409 from now on, to its own secret as to anyone.
    const after = await alice.run(['device', 'approve', pending.code, '--json'])
    expect(JSON.parse(after.stdout).error.code).to.equal('FC_LINK_USED')
    const client = await FastChatClient.open({store: await profileCopy(alice), passphrase})
    await client.revokeDevice('twice')
  })

  it('lists both devices by name, with their last activity', async () => {
    const {devices} = await alice.json<{devices: {id: string; name: string; current: boolean; lastActiveAt: string}[]}>(['device', 'list'])
    expect(devices.map((d) => d.name)).to.have.length(2).and.include('laptop')
    expect(devices.filter((d) => d.current)).to.have.length(1)
    expect(devices.find((d) => d.current)!.name).not.to.equal('laptop')
    for (const device of devices) expect(Date.parse(device.lastActiveAt)).to.be.greaterThan(0)
    const human = await laptop.run(['device', 'list'])
    expect(human.stdout).to.match(/^\* laptop /m)
  })

  it('both devices receive what bob sends', async () => {
    const sent = await cluster.bob.run(['send', alice.username, 'hello both of you'])
    expect(sent.code, sent.stderr).to.equal(0)
    for (const device of [alice, laptop]) {
      const {messages} = await device.json<{messages: {text: string; from: string; verification: {status: string}}[]}>(['inbox'])
      const message = messages.find((m) => m.text === 'hello both of you')
      expect(message, `${device.home}: ${JSON.stringify(messages)}`).to.include({from: cluster.bob.username})
      expect(message!.verification.status).to.equal('valid')
    }
  })

  it('a message sent from one device shows on the other, as sent, and history reads the same on both', async () => {
    const sent = await alice.run(['send', cluster.bob.username, 'written on the desktop'])
    expect(sent.code, sent.stderr).to.equal(0)
    const {messages} = await laptop.json<{messages: {text: string; from: string; to: string; sent?: boolean; verification: {status: string}}[]}>(['inbox'])
    const copy = messages.find((m) => m.text === 'written on the desktop')
    expect(copy, JSON.stringify(messages)).to.include({from: alice.username, to: cluster.bob.username, sent: true})
    expect(copy!.verification.status).to.equal('valid')
    // bob got it once, as usual.
    const bobs = await cluster.bob.json<{messages: {text: string; sent?: boolean}[]}>(['inbox'])
    expect(bobs.messages.filter((m) => m.text === 'written on the desktop')).to.have.length(1)
    expect(bobs.messages.every((m) => m.sent === undefined)).to.equal(true)
    // The human form on the other device: "you → bob".
    await alice.run(['send', cluster.bob.username, 'and another'])
    const human = await laptop.run(['inbox'])
    expect(human.stdout).to.contain(`you → ${cluster.bob.username}: and another`)
    const texts = async (device: CliUser) => (await device.json<{messages: {text: string}[]}>(['history', cluster.bob.username])).messages.map((m) => m.text)
    expect(await texts(laptop)).to.deep.equal(await texts(alice)).and.include('written on the desktop')
  })

  it('a group message sent from one device shows on the other; the group sees one member', async () => {
    const desktop = await FastChatClient.open({store: await profileCopy(alice), passphrase})
    const bob = await FastChatClient.open({store: await profileCopy(cluster.bob), passphrase})
    const {group} = await desktop.createGroup('both-devices', [cluster.bob.username])
    await bob.joinGroup(group.id)
    const sent = await desktop.send(group.id, 'to the group from the desktop')
    expect(sent.members).to.equal(2)
    const {messages} = await laptop.json<{messages: {text: string; from: string; sent?: boolean; group?: {id: string}; verification: {status: string}}[]}>(['inbox'])
    const copy = messages.find((m) => m.text === 'to the group from the desktop')
    expect(copy, JSON.stringify(messages)).to.include({from: alice.username, sent: true})
    expect(copy!.group!.id).to.equal(group.id)
    expect(copy!.verification.status).to.equal('valid')
  })

  it('a mistyped code is refused by the approver and the link stays usable; an unknown one is 404', async () => {
    const linking = await startLinking(phone, 'phone')
    const [link, secret] = linking.code.split('-') as [string, string]
    const typo = `${link}-${secret.slice(0, 5)}${secret.endsWith('Z') ? 'Y' : 'Z'}`
    const wrong = await alice.run(['device', 'approve', typo])
    expect(wrong.code).to.equal(1)
    expect(wrong.stderr).to.match(/does not match the device's request; check it and try again/)
    const unknown = await alice.run(['device', 'approve', `${link === 'ZZZZZZ' ? 'YYYYYY' : 'ZZZZZZ'}-${secret}`, '--json'])
    expect(unknown.code).to.equal(1)
    expect(JSON.parse(unknown.stdout).error.code).to.equal('FC_LINK_NOT_FOUND')
    const right = await alice.run(['device', 'approve', linking.code.toLowerCase()])
    expect(right.code, right.stderr).to.equal(0)
    expect(await linking.exited, linking.stderr()).to.equal(0)
  })

  it('revoking a device ends its session on both servers; the others go on', async () => {
    const phoneToken = await token(phone)
    const laptopToken = await token(laptop)
    const revoked = await alice.run(['device', 'revoke', 'phone'])
    expect(revoked.code, revoked.stderr).to.equal(0)
    for (const server of cluster.servers) {
      await eventually(async () => (await me(server.url, phoneToken)).status === 401, `the phone's token refused by ${server.url}`, 5_000)
      expect((await me(server.url, laptopToken)).status).to.equal(200)
    }
    const after = await phone.run(['inbox'])
    expect(after.code).to.equal(1)
    expect(after.stderr).to.match(/did not accept your session/)
    expect((await laptop.run(['inbox'])).code).to.equal(0)
    const unknown = await alice.run(['device', 'revoke', 'phone'])
    expect(unknown.code).to.equal(1)
    expect(unknown.stderr).to.match(/no device named phone/)
  })

  it('logging in again replaces the profile\'s session instead of adding a device; a taken name gets " (2)"', async () => {
    const again = await alice.run(['login', alice.username, '--device', 'desktop'])
    expect(again.code, again.stderr).to.equal(0)
    const names = async () => (await alice.json<{devices: {name: string}[]}>(['device', 'list'])).devices.map((d) => d.name).sort()
    expect(await names()).to.deep.equal(['desktop', 'laptop'])
    const server = cluster.servers[0]!.url
    const extra = await http('POST', `${server}/v1/sessions`, {json: {username: alice.username, password: PASSWORD, device: 'laptop'}})
    expect(extra.status, JSON.stringify(extra.body)).to.equal(201)
    expect(extra.body.device.name).to.equal('laptop (2)')
    expect(await names()).to.deep.equal(['desktop', 'laptop', 'laptop (2)'])
    const bad = await http('POST', `${server}/v1/sessions`, {json: {username: alice.username, password: PASSWORD, device: 'tab\there'}})
    expect(bad.status).to.equal(400)
    expect((await http('DELETE', `${server}/v1/sessions/current`, {headers: {authorization: `Bearer ${extra.body.token}`}})).status).to.equal(204)
  })

  it('an expired code: 410 to the approver and to the new device', async () => {
    const pending = await FastChatClient.startLink({store: new MemoryStore(), superserver: cluster.superserver.url, name: 'late', passphrase})
    await cluster.db.query(`UPDATE device_links SET expires_at = now() - interval '1 second' WHERE code = $1`, [pending.code.slice(0, 6)])
    const late = await alice.run(['device', 'approve', pending.code, '--json'])
    expect(late.code).to.equal(1)
    expect(JSON.parse(late.stdout).error.code).to.equal('FC_LINK_EXPIRED')
    const error = await pending.waitForApproval().then(() => undefined, (e: unknown) => e as {code: string; status?: number})
    expect(error).to.include({code: 'FC_LINK_EXPIRED', status: 410})
  })

  it('a server that swaps the new device\'s one-time key is caught by the approver, who sends nothing', async () => {
    const proxy = await MaliciousProxy.start(cluster.servers[0]!.url)
    try {
      const pending = await FastChatClient.startLink({store: new MemoryStore(), superserver: cluster.superserver.url, name: 'swapped', passphrase})
      const mallory = await generateOneTimeKey()
      proxy.rewrite('GET', /^\/v1\/devices\/links\//, (body: {publicKey: string}) => ({...body, publicKey: mallory.publicKey}))
      const approver = await FastChatClient.open({store: await profileCopy(alice, proxy.url), passphrase})
      const refused = await approver.approveDevice(pending.code).then(() => undefined, (e: unknown) => e as {code: string})
      expect(refused).to.include({code: 'FC_LINK_KEY_SWAPPED'})
      expect(proxy.seen.filter((r) => r.method === 'POST')).to.deep.equal([])
      // A check re-made by the server under a guessed secret does not open with the real one either.
      const forged = await sealLinkCheck('000000', mallory.fingerprint)
      proxy.reset()
      proxy.rewrite('GET', /^\/v1\/devices\/links\//, (body: object) => ({...body, publicKey: mallory.publicKey, check: forged}))
      const mismatch = await approver.approveDevice(pending.code).then(() => undefined, (e: unknown) => e as {code: string})
      expect(mismatch).to.include({code: 'FC_LINK_CODE_MISMATCH'})
      expect(proxy.seen.filter((r) => r.method === 'POST')).to.deep.equal([])
    } finally {
      await proxy.close()
    }
  })

  it('another account approving with its own key is refused by the new device, which saves nothing and ends the session it got', async () => {
    const store = new MemoryStore()
    const pending = await FastChatClient.startLink({store, superserver: cluster.superserver.url, name: 'victim', passphrase})
    const link = pending.code.slice(0, 6)
    // bob knows the link half (it is on the server) but not the secret half: he reads the request and answers it himself.
    const bob = await FastChatClient.open({store: await profileCopy(cluster.bob), passphrase})
    const request = await bob.session.api.linkRequest(link)
    const bobKey = await bob.session.key()
    const payload = {v: 1, secret: 'GUESS1', username: bob.username, privateKey: (await bob.session.store.privateKey())!, pins: {}, superserver: cluster.superserver.url}
    await bob.session.api.approveLink(link, {ciphertext: await encryptText({text: JSON.stringify(payload), to: [request.publicKey], signer: bobKey})})
    const refused = await pending.waitForApproval().then(() => undefined, (e: unknown) => e as {code: string; message: string})
    expect(refused).to.include({code: 'FC_LINK_REFUSED'})
    expect(refused!.message).to.match(/someone other than you approved this code/)
    expect(await store.profile()).to.equal(undefined)
    expect(await store.privateKey()).to.equal(undefined)
    expect((await bob.devices()).map((d) => d.name)).not.to.include('victim')
  })

  it('concurrent sends (batched in one statement) each leave one sent copy, in order, without gaps', async () => {
    const server = cluster.servers[0]!.url
    const [desktopToken, laptopToken] = [await token(alice), await token(laptop)]
    const events = async (bearer: string, since: number) =>
      (await http('GET', `${server}/v1/events?since=${since}&timeout=0&limit=1000`, {headers: {authorization: `Bearer ${bearer}`}})).body.events as {seq: number; id: string; from: string}[]
    const before = (await events(laptopToken, 0)).at(-1)?.seq ?? 0
    const ids = await Promise.all(Array.from({length: 24}, async (_, i) => {
      const answer = await http('POST', `${server}/v1/messages`, {
        headers: {authorization: `Bearer ${desktopToken}`, 'idempotency-key': `batch-${i}`},
        json: {to: {user: cluster.bob.username}, kind: 'text', ciphertext: fakeCiphertext(`batch${i}`)},
      })
      expect(answer.status, JSON.stringify(answer.body)).to.equal(201)
      return answer.body.id as string
    }))
    const copies = (await events(laptopToken, before)).filter((e) => ids.includes(e.id))
    expect(copies.map((e) => e.id).sort()).to.deep.equal([...ids].sort())
    expect(copies.map((e) => e.seq)).to.deep.equal(copies.map((_, i) => copies[0]!.seq + i))
    expect(copies.every((e) => e.from === alice.username)).to.equal(true)
  })

  it("one link's polling secret cannot read another link", async () => {
    const server = cluster.servers[0]!.url
    const create = async () => {
      const key = await generateOneTimeKey()
      const {body, status} = await http('POST', `${server}/v1/devices/links`, {json: {publicKey: key.publicKey, check: await sealLinkCheck('ABCDEF', key.fingerprint), name: 'probe'}})
      expect(status, JSON.stringify(body)).to.equal(201)
      return body as {link: string; secret: string}
    }
    const [a, b] = [await create(), await create()]
    const own = await http('GET', `${server}/v1/devices/links/${a.link}`, {headers: {authorization: `Bearer ${a.secret}`}})
    expect(own.status).to.equal(200)
    expect(own.body).to.include({status: 'pending'})
    const other = await http('GET', `${server}/v1/devices/links/${b.link}`, {headers: {authorization: `Bearer ${a.secret}`}})
    expect(other.status).to.equal(401)
    expect(other.body.code).to.equal('FC_UNAUTHORIZED')
    const approve = await http('POST', `${server}/v1/devices/links/${b.link}/approve`, {headers: {authorization: `Bearer ${a.secret}`}, json: {ciphertext: '-----BEGIN PGP MESSAGE-----\n\nx\n-----END PGP MESSAGE-----\n'}})
    expect(approve.status).to.equal(401)
    const bad = await http('GET', `${server}/v1/devices/links/not-a-code`, {headers: {authorization: `Bearer ${a.secret}`}})
    expect(bad.status).to.equal(400)
    expect(bad.body.code).to.equal('FC_VALIDATION')
  })

  it('caps pending links cluster-wide (503), and housekeeping prunes links long expired', async () => {
    const server = cluster.servers[1]!.url
    const key = await generateOneTimeKey()
    const body = {publicKey: key.publicKey, check: await sealLinkCheck('ABCDEF', key.fingerprint), name: 'flood'}
    // Pending links up to the cap, as a flood of new devices would leave them (codes outside the alphabet: never a real one).
    const missing = PENDING_LINKS_MAX - (await cluster.db.query(`SELECT count(*)::int AS n FROM device_links WHERE expires_at > now()`))[0].n
    await cluster.db.query(
      `INSERT INTO device_links (code, secret_hash, public_key, check_text, name, expires_at)
       SELECT 'flood-' || n, '\\x00', 'k', 'c', 'flood', now() + interval '1 minute' FROM generate_series(1, $1) n`,
      [missing],
    )
    const refused = await http('POST', `${server}/v1/devices/links`, {json: body})
    expect(refused.status).to.equal(503)
    expect(refused.body.code).to.equal('FC_TOO_MANY_LINKS')
    expect(refused.headers.get('retry-after')).to.equal('60')
    // Expired long enough ago, they go with the next housekeeping; a link expired a moment ago stays (a late poll hears 410).
    await cluster.db.query(`UPDATE device_links SET expires_at = now() - interval '11 minutes' WHERE code LIKE 'flood-%' AND code <> 'flood-1'`)
    await cluster.db.query(`UPDATE device_links SET expires_at = now() - interval '1 minute' WHERE code = 'flood-1'`)
    expect(await new DeviceLinkRepository(cluster.db).deleteExpired(10 * 60_000)).to.be.at.least(missing - 1)
    expect((await cluster.db.query(`SELECT code FROM device_links WHERE code LIKE 'flood-%'`)).map((r: {code: string}) => r.code)).to.deep.equal(['flood-1'])
    expect((await http('POST', `${server}/v1/devices/links`, {json: body})).status).to.equal(201)
  })

  it('revoking this device is a logout', async () => {
    const laptopToken = await token(laptop)
    const revoked = await laptop.json<{revoked: {name: string}; current: boolean}>(['device', 'revoke', 'laptop'])
    expect(revoked).to.deep.include({current: true})
    expect(revoked.revoked.name).to.equal('laptop')
    expect((await new ProfileStore(laptop.home).profile())!.token).to.equal(undefined)
    await eventually(async () => (await me(cluster.servers[1]!.url, laptopToken)).status === 401, "the laptop's token refused", 5_000)
    expect((await alice.run(['device', 'list'])).code).to.equal(0)
  })
})
