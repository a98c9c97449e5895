import {randomBytes} from 'node:crypto'

import {expect} from 'chai'

import {decryptBytes, encryptBytes} from '../../crypto/index.js'
import {EnvelopeError, MAX_HEADER_BYTES, mediaTypeFor, packEnvelope, unpackEnvelope} from '../../client/file-envelope.js'
import {newBinding} from '../../client/message-content.js'
import {loadFixtureKey} from '../helpers/keys.js'

const binding = newBinding({user: 'bob'})

/** An envelope built by hand: [u32 BE length][header bytes][data]. */
function rawEnvelope(header: string | Uint8Array, data: Uint8Array = new Uint8Array(), declaredLength?: number): Uint8Array {
  const headerBytes = typeof header === 'string' ? Buffer.from(header, 'utf8') : header
  const out = Buffer.alloc(4 + headerBytes.byteLength + data.byteLength)
  out.writeUInt32BE(declaredLength ?? headerBytes.byteLength, 0)
  out.set(headerBytes, 4)
  out.set(data, 4 + headerBytes.byteLength)
  return out
}

const expectEnvelopeError = (run: () => unknown, message: RegExp) => expect(run).to.throw(EnvelopeError, message)

describe('file envelope', () => {
  it('packs [4-byte big-endian header length][UTF-8 JSON {name, type, size, fastchat, id, to, sentAt}][bytes]', () => {
    const data = Uint8Array.from([0x89, 0x50, 0x4e, 0x47, 1, 2, 3])
    const envelope = packEnvelope({name: 'photo.png'}, data, binding)
    const length = Buffer.from(envelope).readUInt32BE(0)
    const header = JSON.parse(Buffer.from(envelope.subarray(4, 4 + length)).toString('utf8'))
    expect(header).to.deep.equal({name: 'photo.png', type: 'image/png', size: 7, ...binding})
    expect([...envelope.subarray(4 + length)]).to.deep.equal([...data])
    expect(envelope.byteLength).to.equal(4 + length + 7)
  })

  it('round-trips names in any script and any bytes, empty files included', () => {
    for (const [name, data] of [
      ['Fotoğraf çekimi 写真 🎉.JPG', randomBytes(10_000)],
      ['empty.txt', new Uint8Array()],
      ['no-extension', randomBytes(3)],
    ] as const) {
      const {header, data: back} = unpackEnvelope(packEnvelope({name}, data, binding))
      expect(header).to.deep.equal({name, type: mediaTypeFor(name), size: data.byteLength, binding})
      expect(Buffer.from(back).equals(Buffer.from(data))).to.equal(true)
    }
  })

  it('keeps only the base name of a path, so the sender\'s directories stay private', () => {
    const {header} = unpackEnvelope(packEnvelope({name: '/home/alice/secret-project/plan.pdf'}, new Uint8Array(1), binding))
    expect(header).to.include({name: 'plan.pdf', type: 'application/pdf'})
  })

  it('guesses the media type from the extension, case-insensitively, else application/octet-stream', () => {
    expect(mediaTypeFor('a.png')).to.equal('image/png')
    expect(mediaTypeFor('a.JPG')).to.equal('image/jpeg')
    expect(mediaTypeFor('a.jpeg')).to.equal('image/jpeg')
    expect(mediaTypeFor('a.gif')).to.equal('image/gif')
    expect(mediaTypeFor('a.webp')).to.equal('image/webp')
    expect(mediaTypeFor('a.pdf')).to.equal('application/pdf')
    expect(mediaTypeFor('notes.txt')).to.equal('text/plain')
    expect(mediaTypeFor('archive.tar.gz')).to.equal('application/octet-stream')
    expect(mediaTypeFor('Makefile')).to.equal('application/octet-stream')
    expect(mediaTypeFor('.png')).to.equal('application/octet-stream')
  })

  it('unpacks a data view without copying, also from an offset into a larger buffer', () => {
    const envelope = packEnvelope({name: 'x.bin'}, Uint8Array.from([7, 8, 9]), binding)
    const padded = new Uint8Array(envelope.byteLength + 10)
    padded.set(envelope, 5)
    const {header, data} = unpackEnvelope(padded.subarray(5, 5 + envelope.byteLength))
    expect(header.size).to.equal(3)
    expect([...data]).to.deep.equal([7, 8, 9])
  })

  it('refuses truncated, padded and malformed envelopes', () => {
    const good = packEnvelope({name: 'a.png'}, Uint8Array.from([1, 2, 3]), binding)
    expectEnvelopeError(() => unpackEnvelope(new Uint8Array()), /truncated/)
    expectEnvelopeError(() => unpackEnvelope(Uint8Array.from([0, 0, 1])), /truncated/)
    expectEnvelopeError(() => unpackEnvelope(good.subarray(0, good.byteLength - 1)), /announces 3/)
    expectEnvelopeError(() => unpackEnvelope(Buffer.concat([good, Buffer.from([0])])), /announces 3/)
    expectEnvelopeError(() => unpackEnvelope(good.subarray(0, 10)), /truncated/)
    expectEnvelopeError(() => unpackEnvelope(rawEnvelope('{}', new Uint8Array(), 0)), /header length/)
    expectEnvelopeError(() => unpackEnvelope(rawEnvelope('{}', new Uint8Array(), MAX_HEADER_BYTES + 1)), /header length/)
    expectEnvelopeError(() => unpackEnvelope(rawEnvelope('not json')), /not UTF-8 JSON/)
    expectEnvelopeError(() => unpackEnvelope(rawEnvelope(Uint8Array.from([0x7b, 0xff, 0x7d]))), /not UTF-8 JSON/)
    expectEnvelopeError(() => unpackEnvelope(rawEnvelope('[1]')), /not an object/)
    expectEnvelopeError(() => unpackEnvelope(rawEnvelope('null')), /not an object/)
    expectEnvelopeError(() => unpackEnvelope(rawEnvelope('{"type":"a/b","size":0}')), /no name/)
    expectEnvelopeError(() => unpackEnvelope(rawEnvelope('{"name":"a","type":"a/b","size":-1}')), /no valid size/)
    expectEnvelopeError(() => unpackEnvelope(rawEnvelope('{"name":"a","type":"a/b","size":"3"}', Uint8Array.from([1, 2, 3]))), /no valid size/)
    expectEnvelopeError(() => unpackEnvelope(rawEnvelope('{"name":"a","type":"a/b","size":1.5}')), /no valid size/)
  })

  it('replaces a media type that is not type/subtype with application/octet-stream', () => {
    const header = (type: unknown) => unpackEnvelope(rawEnvelope(JSON.stringify({name: 'a', type, size: 0}))).header.type
    expect(header('IMAGE/PNG')).to.equal('image/png')
    expect(header('text/html; charset=utf-8')).to.equal('application/octet-stream')
    expect(header('\u001b[2Jimage/png')).to.equal('application/octet-stream')
    expect(header(42)).to.equal('application/octet-stream')
    expect(header(undefined)).to.equal('application/octet-stream')
  })

  it('refuses to pack a name too long for the header', () => {
    expect(() => packEnvelope({name: 'x'.repeat(MAX_HEADER_BYTES)}, new Uint8Array(), binding)).to.throw(EnvelopeError, /too long/)
  })

  it('travels inside a signed OpenPGP message: the ciphertext holds neither the name nor the bytes', async () => {
    const [alice, bob] = [await loadFixtureKey('alice'), await loadFixtureKey('bob')]
    const png = Buffer.concat([Buffer.from('\x89PNG\r\n\x1a\n', 'latin1'), randomBytes(2048)])
    const name = 'holiday-at-the-secret-beach.png'
    const sealed = await encryptBytes({data: packEnvelope({name}, png, binding), to: [bob.publicKey, alice.publicKey], signer: alice.unlocked})
    expect(Buffer.from(sealed).includes(Buffer.from(name))).to.equal(false)
    expect(Buffer.from(sealed).includes(Buffer.from('\x89PNG', 'latin1'))).to.equal(false)

    const opened = await decryptBytes({data: sealed, key: bob.unlocked, senderPublicKey: alice.publicKey})
    expect(opened.verification.status).to.equal('valid')
    const {header, data} = unpackEnvelope(opened.data)
    expect(header).to.deep.equal({name, type: 'image/png', size: png.byteLength, binding})
    expect(Buffer.from(data).equals(png)).to.equal(true)
  })
})
