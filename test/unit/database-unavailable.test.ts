import {expect} from 'chai'
import {QueryFailedError} from 'typeorm'

import {problemHeaders, toProblem} from '../../server/http/problem.js'
import {createLogger} from '../../server/logger.js'
import {DatabaseConnectError, NoWritableHostError} from '../../storage/pg-client.js'

/** A node-pg error as the server sends it: a message naming things, and its SQLSTATE. */
const pgError = (message: string, code?: string) => Object.assign(new Error(message), code ? {code} : {})
const where = {method: 'POST', path: '/v1/messages'}
const logger = createLogger('test', 'silent')

describe('database errors that mean "unavailable, retry" (server/http/problem.ts)', () => {
  const unavailable: [string, unknown][] = [
    ['a query with no answer within the query timeout', pgError('Query read timeout')],
    ['the same, wrapped by TypeORM', new QueryFailedError('SELECT 1', [], pgError('Query read timeout'))],
    ['a statement timeout (57014)', new QueryFailedError('SELECT 1', [], pgError('canceling statement due to statement timeout', '57014'))],
    ['a lock timeout (55P03)', pgError('canceling statement due to lock timeout', '55P03')],
    ['a server turned read-only under us (25006)', pgError('cannot execute INSERT in a read-only transaction', '25006')],
    ['no host taking writes', new NoWritableHostError(2)],
    ['a connect timeout', new DatabaseConnectError('could not connect to the database', {cause: new Error('timeout expired')})],
    ['an unreachable host', pgError('connect EHOSTUNREACH 10.0.0.7:5432', 'EHOSTUNREACH')],
  ]
  for (const [what, error] of unavailable) {
    it(`answers ${what} with 503 FC_DATABASE_UNAVAILABLE and Retry-After, naming no host`, () => {
      const problem = toProblem(error, logger, where)
      expect(problem).to.include({status: 503, code: 'FC_DATABASE_UNAVAILABLE'})
      expect(problemHeaders(problem)).to.include({'Retry-After': '1'})
      expect(problem.message).not.to.match(/10\.0\.0\.7|5432|timeout/)
    })
  }

  it('still answers other database errors with a 500', () => {
    expect(toProblem(pgError('duplicate key value violates unique constraint', '23505'), logger, where).status).to.equal(500)
    expect(toProblem(pgError('Query read timeout, or so'), logger, where).status).to.equal(500)
  })
})
