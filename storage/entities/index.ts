import {Blob, BlobChunk} from './blob.js'
import {Block} from './block.js'
import {DeviceLink} from './device-link.js'
import {ChatServer} from './chat-server.js'
import {Event} from './event.js'
import {Group, GroupEpoch, GroupInvitation, GroupKey, GroupMember} from './group.js'
import {Inbox} from './inbox.js'
import {Message} from './message.js'
import {Presence} from './presence.js'
import {Session} from './session.js'
import {SessionRevocation} from './session-revocation.js'
import {User} from './user.js'

export {Blob, BlobChunk, Block, ChatServer, Event, Group, GroupEpoch, GroupInvitation, GroupKey, GroupMember, Inbox, Message, Presence, Session, SessionRevocation, User, DeviceLink}

export const entities = [User, Inbox, Session, Message, Event, Blob, BlobChunk, Group, GroupMember, GroupInvitation, GroupEpoch, GroupKey, ChatServer, Presence, Block, SessionRevocation, DeviceLink]
