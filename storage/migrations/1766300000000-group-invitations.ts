import type {MigrationInterface, QueryRunner} from 'typeorm'

/**
 * Issue 16, part 4: being added to a group by someone else is an invitation,
 * not membership. Invitations live in their own table rather than as a state
 * of group_members: every query over group_members (epochs, fan-out, key
 * sets, history, listing) keeps meaning "joined members", so an invitee can
 * never be counted as one by a query that forgot a filter. Existing members
 * stay joined. Keyed by the invitee (`GET /v1/groups/invitations`, and a
 * block ends the invitations of one inviter).
 */
export class GroupInvitations1766300000000 implements MigrationInterface {
  name = 'GroupInvitations1766300000000'

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE group_invitations (
        group_id   uuid NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
        user_id    bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        invited_by bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        invited_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (group_id, user_id)
      )`)
    await q.query('CREATE INDEX group_invitations_user_id_idx ON group_invitations (user_id, invited_by)')
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query('DROP TABLE IF EXISTS group_invitations')
  }
}
