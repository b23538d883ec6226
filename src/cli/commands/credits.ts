import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { formatPosition } from '../../core/event-store.js';
import { sha256Hex } from '../../http/idempotency.js';
import { GRANT_KINDS, type GrantKind } from '../../ledger/index.js';
import { type CliCommand, UsageError } from '../context.js';

const email = z.email();
const amount = z.coerce.number().pipe(z.int().min(1).max(1_000_000_000));
const VISIBLE_ASCII = /^[\x21-\x7e]{1,255}$/;

/**
 * `credits grant --email E --amount N --kind bonus [--reason R] [--expires-at ISO] [--key K]`: a grant
 * appended to the user's account stream like the admin endpoint does (works with the service running
 * or not: the service's cached state catches up on its next command for that account).
 */
export const creditsGrantCommand: CliCommand = {
  name: 'credits grant',
  usage: 'credits grant --email E --amount N --kind bonus|promotional|compensation [--reason R] [--expires-at ISO] [--key K]',
  options: {
    email: { type: 'string' },
    amount: { type: 'string' },
    kind: { type: 'string' },
    reason: { type: 'string' },
    'expires-at': { type: 'string' },
    key: { type: 'string' },
  },
  async run({ deps, print }, values) {
    const address = email.safeParse(values.email);
    if (!address.success) throw new UsageError('--email must be an email address');
    const credits = amount.safeParse(values.amount);
    if (!credits.success) throw new UsageError('--amount must be a whole number from 1 to 1000000000');
    const kind = (values.kind ?? 'bonus') as GrantKind;
    if (!GRANT_KINDS.includes(kind)) throw new UsageError(`--kind must be one of ${GRANT_KINDS.join(', ')}`);
    let expiresAt: string | null = null;
    if (typeof values['expires-at'] === 'string') {
      const at = new Date(values['expires-at']);
      if (Number.isNaN(at.getTime())) throw new UsageError('--expires-at must be an ISO 8601 instant');
      expiresAt = at.toISOString();
    }
    const key = typeof values.key === 'string' ? values.key : undefined;
    if (key !== undefined && !VISIBLE_ASCII.test(key)) throw new UsageError('--key must be 1-255 visible ASCII characters');

    const user = await deps.users.findByEmail(address.data);
    if (!user) throw new UsageError(`no user with email ${address.data}`);
    const reason = typeof values.reason === 'string' && values.reason.trim() ? values.reason.trim() : 'granted from the command line';
    const result = await deps.ledger.execute(
      user.id,
      {
        type: 'Grant',
        lot_id: randomUUID(),
        kind,
        amount: credits.data,
        reason,
        expires_at: expiresAt,
        // The CLI's keys live in their own namespace on the account.
        ...(key ? { idempotency: { key: `cli:${sha256Hex(key)}`, request_hash: sha256Hex(`${kind}:${credits.data}:${expiresAt}:${reason}`) } } : {}),
      },
      { requestId: `cli-${randomUUID()}` },
    );
    const { decision } = result;
    if (decision.kind === 'rejected') {
      print(`refused: ${decision.error.code}: ${decision.error.detail}`);
      return 1;
    }
    const replay = decision.kind === 'already_applied';
    const position = result.position ?? result.state.position;
    print(
      `${replay ? 'already granted (same --key)' : `granted ${credits.data} ${kind} credits`} to ${user.email}: balance ${result.state.balance}` +
        (position ? `, position ${formatPosition(position)}` : ''),
    );
  },
};
