import {Initial1764000000000} from './1764000000000-initial.js'
import {Presence1764100000000} from './1764100000000-presence.js'
import {QuotaAndHealth1765000000000} from './1765000000000-quota-and-health.js'
import {BlocksAndSessionUse1765100000000} from './1765100000000-blocks-and-session-use.js'
import {SessionRevocations1765200000000} from './1765200000000-session-revocations.js'
import {AssignStrategy1766200000000} from './1766200000000-assign-strategy.js'
import {GroupInvitations1766300000000} from './1766300000000-group-invitations.js'
import {Devices1766400000000} from './1766400000000-devices.js'
import {Receipts1766500000000} from './1766500000000-receipts.js'
import {PresenceVisibility1766600000000} from './1766600000000-presence-visibility.js'
import {CiphertextStorage1766700000000} from './1766700000000-ciphertext-storage.js'

/** Every migration, oldest first. Listed explicitly so the built CLI needs no glob loading. */
export const migrations = [Initial1764000000000, Presence1764100000000, QuotaAndHealth1765000000000, BlocksAndSessionUse1765100000000, SessionRevocations1765200000000, AssignStrategy1766200000000, GroupInvitations1766300000000, Devices1766400000000, Receipts1766500000000, PresenceVisibility1766600000000, CiphertextStorage1766700000000]
