/**
 * Every error code FastChat uses, the servers' and the client's, in one table
 * (docs/errors.md explains each; test/unit/error-codes.test.ts keeps the two
 * and the source in step). A server code has the HTTP status it is answered
 * with; a client code is one the client library or the CLI gives itself,
 * never a server. `both`: a server answers it, and the client gives it too
 * when it finds the same thing out without asking.
 */

interface ServerCode {
  readonly status: number
  readonly side: 'server' | 'both'
  readonly summary: string
}

interface ClientCode {
  readonly side: 'client'
  readonly summary: string
}

export const errorCodes = {
  // Requests
  FC_VALIDATION: {status: 400, side: 'server', summary: 'a body, parameter or query string does not match its schema'},
  FC_MALFORMED_JSON: {status: 400, side: 'server', summary: 'the body is not JSON'},
  FC_BAD_REQUEST: {status: 400, side: 'server', summary: 'the request is not valid HTTP/1.1'},
  FC_ROUTE_NOT_FOUND: {status: 404, side: 'server', summary: 'no route for this method and path'},
  FC_TRANSFER_TIMEOUT: {status: 408, side: 'server', summary: 'an upload stalled or took too long in all'},
  FC_PAYLOAD_TOO_LARGE: {status: 413, side: 'both', summary: 'the body (a text, a file) is larger than the route allows'},
  FC_UNSUPPORTED_MEDIA_TYPE: {status: 415, side: 'server', summary: 'the body is not of the content type the route takes'},
  FC_HEADERS_TOO_LARGE: {status: 431, side: 'server', summary: 'the request line and headers exceed 16 KiB'},

  // Accounts and permissions
  FC_UNAUTHORIZED: {status: 401, side: 'server', summary: 'no, unknown, expired or revoked bearer token, or wrong credentials'},
  FC_FORBIDDEN: {status: 403, side: 'server', summary: 'authenticated, but not allowed to do this'},
  FC_NOT_ACCEPTED: {status: 403, side: 'server', summary: 'the recipient does not accept messages or invitations from you'},
  FC_NOT_FOUND: {status: 404, side: 'server', summary: 'the resource does not exist, or is not yours to know about'},
  FC_USER_NOT_FOUND: {status: 404, side: 'both', summary: 'no user by that name'},
  FC_USERNAME_TAKEN: {status: 409, side: 'server', summary: 'registration: the name is taken'},
  FC_RATE_LIMITED: {status: 429, side: 'server', summary: 'too many logins, registrations or sends; retry after a while'},

  // Groups
  FC_GROUP_NOT_FOUND: {status: 404, side: 'both', summary: 'no such group'},
  FC_GROUP_MEMBER_NOT_FOUND: {status: 404, side: 'server', summary: 'the user is not a member of the group'},
  FC_GROUP_KEY_NOT_FOUND: {status: 404, side: 'server', summary: 'that epoch of the group does not exist or has no keys yet'},
  FC_NOT_GROUP_MEMBER: {status: 403, side: 'server', summary: 'you are not (or, for an epoch, were not) a member of the group'},
  FC_GROUP_ADMIN_REQUIRED: {status: 403, side: 'server', summary: 'this needs the admin role in the group'},
  FC_GROUP_TOO_LARGE: {status: 400, side: 'server', summary: 'a group would have more members than allowed'},
  FC_ALREADY_GROUP_MEMBER: {status: 409, side: 'server', summary: 'the user is already a member of the group'},
  FC_NOT_INVITED: {status: 404, side: 'both', summary: 'joining or declining a group you have no open invitation to'},
  FC_ALREADY_INVITED: {status: 409, side: 'server', summary: 'the user already has an open invitation to the group'},
  FC_LAST_ADMIN: {status: 409, side: 'server', summary: "demoting the group's last admin"},
  FC_GROUP_EPOCH_STALE: {status: 409, side: 'server', summary: "a message or key set for an epoch that is not the group's current one"},
  FC_GROUP_NOT_KEYED: {status: 409, side: 'server', summary: "the group's current epoch has no keys yet"},
  FC_GROUP_KEYS_MISMATCH: {status: 409, side: 'server', summary: "a key set that does not cover exactly the epoch's members"},
  FC_GROUP_ALREADY_KEYED: {status: 409, side: 'server', summary: 'the epoch already has its key set'},

  // Messages, files and events
  FC_MESSAGE_NOT_FOUND: {status: 404, side: 'server', summary: 'the message a history page starts before is not in that conversation'},
  FC_BLOB_NOT_FOUND: {status: 404, side: 'server', summary: 'no such blob, or not yours to read or attach'},
  FC_IDEMPOTENCY_KEY_REUSED: {status: 409, side: 'server', summary: 'an Idempotency-Key of an earlier, different message'},
  FC_CURSOR_AHEAD: {status: 409, side: 'server', summary: 'the cursor is beyond the end of your event stream'},
  FC_CURSOR_EXPIRED: {status: 410, side: 'server', summary: 'events after the cursor were removed by retention'},
  FC_STORAGE_QUOTA_EXCEEDED: {status: 413, side: 'server', summary: 'an upload would take your stored files past your quota'},
  FC_TOO_MANY_TRANSFERS: {status: 429, side: 'server', summary: 'too many uploads or downloads of yours in progress on this server'},

  // Devices
  FC_DEVICE_NOT_FOUND: {status: 404, side: 'both', summary: 'none of your live sessions (devices) has that id or name'},
  FC_LINK_NOT_FOUND: {status: 404, side: 'server', summary: 'no device link with that code'},
  FC_LINK_USED: {status: 409, side: 'server', summary: 'the device link was already approved, or its session already handed out'},
  FC_LINK_EXPIRED: {status: 410, side: 'both', summary: 'the device link code is older than its few minutes'},
  FC_TOO_MANY_LINKS: {status: 503, side: 'server', summary: 'too many device links are pending on the cluster; try again in a minute'},

  // Servers
  FC_SERVER_NOT_REGISTERED: {status: 404, side: 'server', summary: 'a heartbeat from a chat server the superserver does not know'},
  FC_INTERNAL: {status: 500, side: 'server', summary: 'a bug on our side'},
  FC_NO_SERVER: {status: 503, side: 'server', summary: 'the superserver knows no healthy chat server'},
  FC_DRAINING: {status: 503, side: 'server', summary: 'this chat server is shutting down'},
  FC_SERVER_BUSY: {status: 503, side: 'server', summary: 'this chat server is checking too many passwords at once'},
  FC_DATABASE_UNAVAILABLE: {status: 503, side: 'server', summary: 'PostgreSQL is unreachable or restarting'},
  FC_UPLOADS_BUSY: {status: 503, side: 'server', summary: "every one of this server's upload connections is busy"},

  // The client: its profile and its use
  FC_USAGE: {side: 'client', summary: 'bad command-line usage or input the CLI refuses itself'},
  FC_START_FAILED: {side: 'client', summary: 'a server or the local cluster could not start'},
  FC_UNEXPECTED: {side: 'client', summary: 'a bug, or something the CLI did not foresee'},
  FC_NO_PROFILE: {side: 'client', summary: 'no account in the profile'},
  FC_PROFILE_IN_USE: {side: 'client', summary: 'the profile already belongs to another account'},
  FC_NO_KEYS: {side: 'client', summary: 'no key pair in the profile'},
  FC_PROFILE_UNREADABLE: {side: 'client', summary: 'a profile file cannot be read or is not JSON'},
  FC_LOGGED_OUT: {side: 'client', summary: 'logged out'},
  FC_SESSION_EXPIRED: {side: 'client', summary: 'session expired'},
  FC_WRONG_PASSWORD: {side: 'client', summary: 'login: wrong username or password'},
  FC_DAEMON_UNAVAILABLE: {side: 'client', summary: 'the daemon cannot be reached'},
  FC_SAVE_FAILED: {side: 'client', summary: 'a received file cannot be saved'},
  FC_AMBIGUOUS_NAME: {side: 'client', summary: 'a bare name that is both a user and one of your groups'},
  FC_AMBIGUOUS_GROUP: {side: 'client', summary: 'several of your groups have that name'},

  // The client: servers and transfers
  FC_NETWORK: {side: 'client', summary: 'no answer at all from the chat server or superserver'},
  FC_NO_CHAT_SERVER: {side: 'client', summary: 'the superserver could not give a chat server'},
  FC_BAD_RESPONSE: {side: 'client', summary: "a server's answer does not match the API's schemas"},
  FC_MESSAGE_TOO_LARGE: {side: 'client', summary: "a text whose ciphertext would be over the server's limit"},
  FC_FILE_UNREADABLE: {side: 'client', summary: 'a file to send cannot be read'},
  FC_UPLOAD_CUT_OFF: {side: 'client', summary: 'the server closed the connection while a file was uploading'},
  FC_FILE_TOO_LARGE: {side: 'client', summary: 'a file to send or download larger than the client accepts'},
  FC_GROUP_REKEY_FAILED: {side: 'client', summary: "a group's members kept changing while this client keyed its epoch"},

  // The client: keys and encryption (crypto/ throws these too)
  FC_BAD_PASSPHRASE: {side: 'client', summary: 'the passphrase does not unlock the private key'},
  FC_BAD_KEY: {side: 'client', summary: 'a key is unreadable or cannot be used'},
  FC_BAD_GROUP_KEY: {side: 'client', summary: "a group's key is not provably from a trusted member, or not that group's and epoch's"},
  FC_GROUP_KEY_UNAVAILABLE: {side: 'client', summary: 'this client cannot have the key of a group epoch'},
  FC_BAD_MESSAGE: {side: 'client', summary: 'not an encrypted OpenPGP message'},
  FC_DECRYPT_FAILED: {side: 'client', summary: 'a message is not encrypted to your key, or is damaged'},
  FC_KEY_CHANGED: {side: 'client', summary: "the server's key for a pinned contact differs from the pin"},
  FC_KEY_LOOKUP_MISMATCH: {side: 'client', summary: "the server answered a key lookup with another name's key"},
  FC_KEY_MISMATCH: {side: 'client', summary: 'a key or fingerprint given is not the one expected'},

  // The client: linking devices
  FC_AMBIGUOUS_DEVICE: {side: 'client', summary: 'several of your devices have that name'},
  FC_LINK_CODE_MISMATCH: {side: 'client', summary: "a device link code whose secret half does not match the new device's request"},
  FC_LINK_KEY_SWAPPED: {side: 'client', summary: "the server's copy of a device link names another one-time key than the new device made"},
  FC_LINK_REFUSED: {side: 'client', summary: 'a device link approved by someone who does not know the code, or with a key the account does not publish'},
} as const satisfies Record<string, ServerCode | ClientCode>

export type ErrorCode = keyof typeof errorCodes

/** The codes a server answers with: those with a status. */
export type ServerErrorCode = {[C in ErrorCode]: (typeof errorCodes)[C] extends {status: number} ? C : never}[ErrorCode]
