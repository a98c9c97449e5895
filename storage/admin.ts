import pg from 'pg'

import {databaseUrl} from './embedded.js'

/** Cluster-level chores that need the maintenance database rather than ours. */
async function withAdmin<T>(adminUrl: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({connectionString: adminUrl, connectionTimeoutMillis: 3_000})
  await client.connect()
  try {
    return await work(client)
  } finally {
    await client.end()
  }
}

export async function canConnect(url: string): Promise<boolean> {
  try {
    await withAdmin(url, (client) => client.query('SELECT 1'))
    return true
  } catch {
    return false
  }
}

/** Creates database `name` unless it exists; returns its URL. */
export async function ensureDatabase(adminUrl: string, name: string): Promise<string> {
  await withAdmin(adminUrl, async (client) => {
    const found = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [name])
    if (found.rowCount === 0) await client.query(`CREATE DATABASE ${client.escapeIdentifier(name)}`)
  })
  return databaseUrl(adminUrl, name)
}

/** The databases whose names start with `prefix` (test runs: one per mocha worker). */
export async function databasesNamed(adminUrl: string, prefix: string): Promise<string[]> {
  return withAdmin(adminUrl, async (client) => {
    const rows = await client.query<{datname: string}>("SELECT datname FROM pg_database WHERE starts_with(datname, $1)", [prefix])
    return rows.rows.map((row) => row.datname)
  })
}

export async function dropDatabase(adminUrl: string, name: string): Promise<void> {
  await withAdmin(adminUrl, (client) => client.query(`DROP DATABASE IF EXISTS ${client.escapeIdentifier(name)} WITH (FORCE)`))
}
