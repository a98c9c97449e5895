import type pg from 'pg'
import type {DataSource} from 'typeorm'

/**
 * Runs a hot query as a named prepared statement on TypeORM's pg pool: each
 * connection parses and plans it once, then only binds and executes. Used for
 * the statements every message or poll runs; errors are node-pg's own (with
 * their SQLSTATE `code`), not TypeORM's QueryFailedError.
 */
export async function prepared<T>(db: DataSource, name: string, text: string, values: unknown[]): Promise<T[]> {
  const pool = (db.driver as unknown as {master: pg.Pool}).master
  const result = await pool.query({name, text, values})
  return result.rows as T[]
}
