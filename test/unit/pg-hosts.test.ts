import {expect} from 'chai'
import {parse} from 'pg-connection-string'

import {redactDatabaseUrl} from '../../storage/data-source.js'
import {DatabaseUrlError, parseDatabaseUrl} from '../../storage/pg-hosts.js'

/** What node-pg makes of the single-host URL a host gets (the part of its config that says where and as whom). */
function nodePgSees(url: string) {
  const config = parse(url)
  return {host: config.host, port: config.port, user: config.user, password: config.password, database: config.database}
}

describe('libpq multi-host database URLs (storage/pg-hosts.ts)', () => {
  it('splits the host list and hands each host a URL node-pg reads with the same user, password and database', () => {
    const target = parseDatabaseUrl('postgres://chat:s3cret@db1.example:5432,db2.example:5433/fastchat?target_session_attrs=read-write')
    expect(target.hosts).to.deep.equal([
      {host: 'db1.example', port: 5432},
      {host: 'db2.example', port: 5433},
    ])
    expect(target.targetSessionAttrs).to.equal('read-write')
    expect(target.routed).to.equal(true)
    expect(target.urlFor(target.hosts[1]!)).to.equal('postgres://chat:s3cret@db2.example:5433/fastchat')
    expect(nodePgSees(target.urlFor(target.hosts[0]!))).to.deep.equal({host: 'db1.example', port: '5432', user: 'chat', password: 's3cret', database: 'fastchat'})
  })

  it('defaults to read-write with several hosts, and to any (no routing, the URL untouched) with one', () => {
    expect(parseDatabaseUrl('postgresql://u@h1,h2/db').targetSessionAttrs).to.equal('read-write')
    const single = parseDatabaseUrl('postgres://u:p@h1:6000/db?sslmode=disable')
    expect(single).to.include({targetSessionAttrs: 'any', routed: false})
    expect(single.hosts).to.deep.equal([{host: 'h1', port: 6000}])
    expect(single.urlFor(single.hosts[0]!)).to.equal('postgres://u:p@h1:6000/db?sslmode=disable')
  })

  it('routes one host too when a target is asked for', () => {
    const target = parseDatabaseUrl('postgres://u@h1/db?target_session_attrs=primary')
    expect(target).to.include({targetSessionAttrs: 'primary', routed: true})
    expect(target.urlFor(target.hosts[0]!)).to.equal('postgres://u@h1/db')
  })

  it('accepts any, primary and read-write, and refuses the rest without repeating the URL', () => {
    for (const value of ['any', 'primary', 'read-write']) expect(parseDatabaseUrl(`postgres://u:pw@h1,h2/db?target_session_attrs=${value}`).targetSessionAttrs).to.equal(value)
    for (const value of ['standby', 'prefer-standby', 'read-only', 'READ-WRITE', '']) {
      expect(() => parseDatabaseUrl(`postgres://u:hunter2@h1,h2/db?target_session_attrs=${value}`))
        .to.throw(DatabaseUrlError)
        .with.property('message')
        .that.does.not.include('hunter2')
    }
  })

  it('gives hosts without a port 5432, and keeps IPv6 addresses in brackets', () => {
    const target = parseDatabaseUrl('postgres://u@[::1]:5433,[fe80::1%25eth0],h3/db')
    expect(target.hosts).to.deep.equal([
      {host: '::1', port: 5433},
      {host: 'fe80::1%eth0', port: 5432},
      {host: 'h3', port: 5432},
    ])
    expect(target.urlFor(target.hosts[0]!)).to.equal('postgres://u@[::1]:5433/db')
    expect(nodePgSees(target.urlFor(target.hosts[0]!))).to.include({host: '::1', port: '5433'})
    expect(target.urlFor(target.hosts[2]!)).to.equal('postgres://u@h3:5432/db')
  })

  it('percent-decodes hosts (a socket directory) and leaves the percent-encoded password to node-pg', () => {
    const target = parseDatabaseUrl('postgres://chat:p%40ss%2Fw%3Ard@%2Fvar%2Frun%2Fpostgresql:5432,db2:5432/fast%20chat')
    expect(target.hosts[0]).to.deep.equal({host: '/var/run/postgresql', port: 5432})
    expect(nodePgSees(target.urlFor(target.hosts[1]!))).to.include({host: 'db2', password: 'p@ss/w:rd', database: 'fast chat'})
    expect(nodePgSees(target.urlFor(target.hosts[0]!))).to.include({host: '/var/run/postgresql', password: 'p@ss/w:rd'})
  })

  it('passes every other parameter on for node-pg to read, and drops only target_session_attrs', () => {
    const target = parseDatabaseUrl('postgres://u@h1,h2/db?sslmode=disable&target_session_attrs=read-write&application_name=chat%20server&options=-c%20search_path%3Dx')
    const url = target.urlFor(target.hosts[1]!)
    expect(url).to.equal('postgres://u@h2:5432/db?sslmode=disable&application_name=chat%20server&options=-c%20search_path%3Dx')
    const config = parse(url)
    expect(config).to.include({sslmode: 'disable', application_name: 'chat server', options: '-c search_path=x'})
    expect(config).not.to.have.property('target_session_attrs')
  })

  it('refuses broken host lists with a clear error', () => {
    for (const url of ['postgres://u@h1,,h2/db', 'postgres://u@h1:port,h2/db', 'postgres://u@[::1,h2/db', 'postgres://u@h1:70000,h2/db']) {
      expect(() => parseDatabaseUrl(url), url).to.throw(DatabaseUrlError)
    }
    expect(() => parseDatabaseUrl('postgres://u@/db?host=h1,h2')).to.throw(DatabaseUrlError, /host list/)
  })

  it('hands what is not a postgres:// URL (a socket path) to node-pg untouched', () => {
    const target = parseDatabaseUrl('/var/run/postgresql fastchat')
    expect(target).to.include({routed: false})
    expect(target.urlFor({host: '', port: 0})).to.equal('/var/run/postgresql fastchat')
  })

  it('masks the password of a multi-host URL for logs, as of a single-host one', () => {
    expect(redactDatabaseUrl('postgres://chat:s3cret@db1:5432,db2:5433/fastchat?target_session_attrs=read-write')).to.equal(
      'postgres://chat:***@db1:5432,db2:5433/fastchat?target_session_attrs=read-write',
    )
    expect(redactDatabaseUrl('postgres://chat@db1:5432,db2:5433/fastchat?password=s3cret&sslmode=require')).to.equal('postgres://chat@db1:5432,db2:5433/fastchat?password=***&sslmode=require')
    expect(redactDatabaseUrl('postgres://chat:s3cret@db1:5432/fastchat')).to.equal('postgres://chat:***@db1:5432/fastchat')
  })
})
