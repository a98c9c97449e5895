import {Initial1764000000000} from './1764000000000-initial.js'

/** Every migration, oldest first. Listed explicitly so the built CLI needs no glob loading. */
export const migrations = [Initial1764000000000]
