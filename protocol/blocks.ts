import {z} from 'zod'

import {isoTime, username} from './primitives.js'

/** One entry of a block list: POST /v1/blocks answers one, GET /v1/blocks a list (docs/api.md "Blocking"). */
export const blockEntry = z.object({username, blockedAt: isoTime})

// GET /v1/blocks
export const blockList = z.object({blocks: z.array(blockEntry).max(100_000)})

export type BlockEntry = z.infer<typeof blockEntry>
