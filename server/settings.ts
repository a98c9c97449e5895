import {z} from 'zod'

/**
 * A process's configuration is a table of settings, each with its environment
 * variable, its default (inside the schema) and one line of documentation.
 * Flags win over the environment, the environment over defaults; a bad value
 * stops the process at start-up with the variable's name in the message.
 */
export interface Setting<S extends z.ZodType = z.ZodType> {
  env: string
  doc: string
  schema: S
  /** Never printed, not even in an error message. */
  secret?: boolean
}

export type Settings = Record<string, Setting>
export type Resolved<T extends Settings> = {[K in keyof T]: z.output<T[K]['schema']>}

export class ConfigError extends Error {}

export function resolveSettings<T extends Settings>(
  settings: T,
  flags: Partial<Record<keyof T, unknown>> = {},
  env: NodeJS.ProcessEnv = process.env,
): Resolved<T> {
  const out: Record<string, unknown> = {}
  const problems: string[] = []
  for (const [key, setting] of Object.entries(settings)) {
    const fromFlag = flags[key]
    const fromEnv = env[setting.env]
    const raw = fromFlag ?? (fromEnv === '' ? undefined : fromEnv)
    const result = setting.schema.safeParse(raw)
    if (result.success) {
      out[key] = result.data
    } else {
      const shown = setting.secret || raw === undefined ? '' : ` (got ${JSON.stringify(raw)})`
      problems.push(`${setting.env}${shown}: ${result.error.issues[0]?.message ?? 'invalid'} — ${setting.doc}`)
    }
  }
  if (problems.length > 0) throw new ConfigError(`Invalid configuration:\n  ${problems.join('\n  ')}`)
  return out as Resolved<T>
}

export const port = z.coerce.number().int().min(0).max(65_535)
export const milliseconds = z.coerce.number().int().min(1)
export const httpUrl = z
  .string()
  .url()
  .refine((value) => /^https?:\/\//.test(value), 'must be an http(s) URL')
  .transform((value) => value.replace(/\/+$/, ''))
export const logLevel = z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])
/** on/off, true/false, 1/0, yes/no; flags may pass a real boolean. */
export const onOff = z.union([
  z.boolean(),
  z
    .string()
    .toLowerCase()
    .refine((value) => ['on', 'off', 'true', 'false', '1', '0', 'yes', 'no'].includes(value), 'must be on or off')
    .transform((value) => ['on', 'true', '1', 'yes'].includes(value)),
])
