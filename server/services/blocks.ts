import type {BlockRepository, BlockRow} from '../../storage/repositories/block.repository.js'
import type {SessionUser} from '../../storage/repositories/session.repository.js'
import type {AccountService} from './accounts.js'
import {ValidationError} from './errors.js'

export interface BlockView {
  username: string
  blockedAt: string
}

const view = (row: BlockRow): BlockView => ({username: row.username, blockedAt: new Date(row.blockedAt).toISOString()})

/** Ends the open group invitations one user sent another (GroupService.endInvitationsFrom). */
export interface Invitations {
  endInvitationsFrom(inviteeId: string, inviterId: string): Promise<number>
}

/** A user's block list. The server enforces it in MessageService and GroupService. */
export class BlockService {
  constructor(
    private readonly blocks: BlockRepository,
    private readonly accounts: AccountService,
    private readonly invitations: Invitations,
  ) {}

  async block(user: SessionUser, username: string): Promise<BlockView & {created: boolean}> {
    const target = await this.accounts.find(username)
    if (target.id === user.userId) throw new ValidationError('You cannot block yourself.', [{path: 'username', message: 'is you'}])
    const {created, blockedAt} = await this.blocks.add(user.userId, target.id)
    // After the block, so that no new invitation from them can slip in between (inviting checks blocks).
    await this.invitations.endInvitationsFrom(user.userId, target.id)
    return {...view({username: target.username, blockedAt}), created}
  }

  async unblock(user: SessionUser, username: string): Promise<void> {
    const target = await this.accounts.find(username)
    await this.blocks.remove(user.userId, target.id)
  }

  async list(user: SessionUser): Promise<BlockView[]> {
    return (await this.blocks.list(user.userId)).map(view)
  }
}
