import {pino, type Logger, type LevelWithSilent} from 'pino'

/**
 * Structured JSON logs on stderr (stdout is kept for the one "listening on"
 * line that scripts and `fastchat up` read). Secrets are redacted by path so a
 * careless `log.info({req})` cannot leak a token or the cluster secret.
 */
export const REDACTED_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'headers.authorization',
  'authorization',
  'password',
  'token',
  'clusterSecret',
  'databaseUrl',
  'config.clusterSecret',
  'config.databaseUrl',
]

export function createLogger(name: string, level: LevelWithSilent = 'info'): Logger {
  return pino({name, level, redact: {paths: REDACTED_PATHS, censor: '[redacted]'}}, pino.destination(2))
}
