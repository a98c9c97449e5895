import type {MigrationInterface, QueryRunner} from 'typeorm'

/**
 * The first schema. Tables that grow with traffic (events, messages,
 * blob_chunks, group_keys) carry the key a sharded Postgres would distribute
 * them by in their primary key; see docs/operations.md.
 */
export class Initial1764000000000 implements MigrationInterface {
  name = 'Initial1764000000000'

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE users (
        id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        username      text NOT NULL,
        username_key  text NOT NULL,
        password_hash text NOT NULL,
        public_key    text NOT NULL,
        fingerprint   text NOT NULL,
        created_at    timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT users_username_key_unique UNIQUE (username_key)
      )`)
    await q.query(`
      CREATE TABLE inboxes (
        user_id        bigint PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
        last_seq       bigint NOT NULL DEFAULT 0,
        pruned_through bigint NOT NULL DEFAULT 0
      )`)
    await q.query(`
      CREATE TABLE sessions (
        token_hash bytea PRIMARY KEY,
        user_id    bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        created_at timestamptz NOT NULL DEFAULT now(),
        expires_at timestamptz NOT NULL
      )`)
    await q.query(`CREATE INDEX sessions_user_id_idx ON sessions (user_id)`)
    await q.query(`CREATE INDEX sessions_expires_at_idx ON sessions (expires_at)`)
    await q.query(`
      CREATE TABLE blobs (
        id          uuid PRIMARY KEY,
        uploader_id bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        size        bigint NOT NULL CHECK (size >= 0),
        created_at  timestamptz NOT NULL DEFAULT now()
      )`)
    await q.query(`
      CREATE TABLE blob_chunks (
        blob_id uuid NOT NULL REFERENCES blobs(id) ON DELETE CASCADE,
        idx     integer NOT NULL,
        data    bytea NOT NULL,
        PRIMARY KEY (blob_id, idx)
      )`)
    await q.query(`
      CREATE TABLE groups (
        id         uuid PRIMARY KEY,
        name       text NOT NULL,
        created_by bigint NOT NULL REFERENCES users(id),
        epoch      integer NOT NULL DEFAULT 1,
        created_at timestamptz NOT NULL DEFAULT now()
      )`)
    await q.query(`
      CREATE TABLE group_members (
        group_id  uuid NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
        user_id   bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        role      text NOT NULL CHECK (role IN ('admin', 'member')),
        joined_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (group_id, user_id)
      )`)
    await q.query(`CREATE INDEX group_members_user_id_idx ON group_members (user_id)`)
    await q.query(`
      CREATE TABLE group_epochs (
        group_id   uuid NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
        epoch      integer NOT NULL,
        member_ids bigint[] NOT NULL,
        keyed_by   bigint REFERENCES users(id),
        created_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (group_id, epoch)
      )`)
    await q.query(`
      CREATE TABLE group_keys (
        group_id    uuid NOT NULL,
        epoch       integer NOT NULL,
        user_id     bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        wrapped_key text NOT NULL,
        PRIMARY KEY (group_id, epoch, user_id),
        FOREIGN KEY (group_id, epoch) REFERENCES group_epochs(group_id, epoch) ON DELETE CASCADE
      )`)
    await q.query(`
      CREATE TABLE messages (
        id              uuid PRIMARY KEY,
        sender_id       bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        recipient_id    bigint REFERENCES users(id) ON DELETE CASCADE,
        group_id        uuid REFERENCES groups(id) ON DELETE CASCADE,
        epoch           integer,
        conversation    text NOT NULL,
        kind            text NOT NULL CHECK (kind IN ('text', 'image')),
        ciphertext      text NOT NULL,
        blob_id         uuid REFERENCES blobs(id) ON DELETE SET NULL,
        idempotency_key text,
        sent_at         timestamptz NOT NULL DEFAULT now(),
        CHECK ((recipient_id IS NULL) <> (group_id IS NULL))
      )`)
    // A retried send finds its first result here instead of storing twice.
    await q.query(`
      CREATE UNIQUE INDEX messages_idempotency_idx ON messages (sender_id, idempotency_key)
      WHERE idempotency_key IS NOT NULL`)
    // History pages walk one conversation newest first.
    await q.query(`CREATE INDEX messages_conversation_idx ON messages (conversation, sent_at DESC, id DESC)`)
    await q.query(`CREATE INDEX messages_blob_id_idx ON messages (blob_id) WHERE blob_id IS NOT NULL`)
    await q.query(`
      CREATE TABLE events (
        recipient_id bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        seq          bigint NOT NULL,
        type         text NOT NULL,
        message_id   uuid REFERENCES messages(id) ON DELETE CASCADE,
        payload      jsonb,
        created_at   timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (recipient_id, seq)
      )`)
    await q.query(`CREATE INDEX events_created_at_idx ON events (created_at)`)
    await q.query(`
      CREATE TABLE chat_servers (
        id            uuid PRIMARY KEY,
        url           text NOT NULL,
        registered_at timestamptz NOT NULL DEFAULT now(),
        last_seen     timestamptz NOT NULL DEFAULT now(),
        draining      boolean NOT NULL DEFAULT false,
        stats         jsonb NOT NULL DEFAULT '{}'
      )`)
    // Shared by every superserver, so round-robin is global across them.
    await q.query(`CREATE SEQUENCE chat_server_assign_seq`)
  }

  async down(q: QueryRunner): Promise<void> {
    for (const table of ['events', 'messages', 'group_keys', 'group_epochs', 'group_members', 'groups', 'blob_chunks', 'blobs', 'sessions', 'inboxes', 'users', 'chat_servers']) {
      await q.query(`DROP TABLE IF EXISTS ${table}`)
    }
    await q.query(`DROP SEQUENCE IF EXISTS chat_server_assign_seq`)
  }
}
