import { randomUUID } from 'node:crypto';
import { formatPosition } from '../../core/event-store.js';
import type { AppDeps } from '../../http/deps.js';
import type { LedgerCommand } from '../../ledger/index.js';
import type { CliCommand } from '../context.js';

/**
 * `seed-demo`: a few users with a believable history, all through the ledger's commands (so every
 * projection, the audit chain and the read models see ordinary events). Run once: if the demo users
 * exist it says so and changes nothing.
 */

const DOMAIN = 'demo.example.com';
const DAY = 86_400_000;

interface DemoUser {
  readonly email: string;
  readonly name: string;
  readonly role?: 'admin' | 'auditor';
}

const USERS: readonly DemoUser[] = [
  { email: `admin@${DOMAIN}`, name: 'Demo Admin', role: 'admin' },
  { email: `alice@${DOMAIN}`, name: 'Alice Example' },
  { email: `bob@${DOMAIN}`, name: 'Bob Example' },
  { email: `carol@${DOMAIN}`, name: 'Carol Example' },
];

export const seedDemoCommand: CliCommand = {
  name: 'seed-demo',
  usage: 'seed-demo                     create a few demo users with credit history',
  async run({ deps, print }) {
    if (await deps.users.findByEmail(`alice@${DOMAIN}`)) {
      print(`demo data is already there (alice@${DOMAIN} exists); nothing changed`);
      return 0;
    }
    const ids: Record<string, string> = {};
    for (const user of USERS) {
      const created = await deps.users.create({ email: user.email, name: user.name, ...(user.role ? { role: user.role } : {}) });
      ids[user.email.split('@')[0] as string] = created.id;
      print(`user ${created.email} (${created.role}) ${created.id}`);
    }
    const admin = ids.admin as string;
    const now = deps.clock.now();
    const run = async (who: string, command: LedgerCommand): Promise<void> => {
      const userId = ids[who] as string;
      const result = await deps.ledger.execute(userId, command, { requestId: `seed-demo-${randomUUID()}`, actorId: 'actor_id' in command ? (command.actor_id ?? null) : null });
      if (result.decision.kind === 'rejected') throw new Error(`seed-demo: ${who} ${command.type}: ${result.decision.error.detail}`);
      const at = result.position ? ` @ ${formatPosition(result.position)}` : '';
      print(`  ${who.padEnd(6)} ${command.type.padEnd(12)} balance ${result.state.balance}${result.state.reserved ? ` (reserved ${result.state.reserved})` : ''}${at}`);
    };
    const spend = (amount: number, description: string): LedgerCommand => ({ type: 'Spend', spend_id: randomUUID(), amount, description });
    const purchase = (packageId: string, credits: number, cents: number): LedgerCommand => {
      const payment = `pi_demo_${randomUUID().replace(/-/g, '').slice(0, 20)}`;
      return {
        type: 'Purchase',
        purchase_id: randomUUID(),
        lot_id: randomUUID(),
        payment_id: payment,
        package_id: packageId,
        credits,
        amount_cents: cents,
        currency: 'usd',
        provider_event_id: `evt_demo_${payment.slice(8)}`,
      };
    };

    // Alice: a paying pro user.
    await run('alice', { type: 'Grant', lot_id: randomUUID(), kind: 'bonus', amount: 100, reason: 'welcome bonus', actor_id: admin });
    await run('alice', purchase('basic', 500, 2000));
    await run('alice', { type: 'ChangeTier', tier: 'pro', reason: 'annual plan', actor_id: admin });
    await run('alice', spend(12, 'PDF export'));
    await run('alice', spend(30, 'batch render'));
    const reservation = randomUUID();
    await run('alice', { type: 'Reserve', reservation_id: reservation, amount: 15, ttl_seconds: 600, description: 'video render' });
    await run('alice', { type: 'Settle', reservation_id: reservation, spend_id: randomUUID(), amount: 9 });
    await aiGeneration(deps, ids.alice as string, print);

    // Bob: promotional credits that expire, a refunded spend.
    await run('bob', { type: 'Grant', lot_id: randomUUID(), kind: 'promotional', amount: 200, reason: 'spring promotion', expires_at: new Date(now.getTime() + 30 * DAY).toISOString(), priority: 1, actor_id: admin });
    const refunded = randomUUID();
    await run('bob', { type: 'Spend', spend_id: refunded, amount: 40, description: 'failed export' });
    await run('bob', spend(25, 'thumbnail pack'));
    await run('bob', { type: 'RefundSpend', refund_id: randomUUID(), spend_id: refunded, reason: 'export failed on our side', actor_id: admin });

    // Carol: a starter purchase, a basic trial that ends, an adjustment, a hold still open.
    await run('carol', purchase('starter', 100, 500));
    await run('carol', { type: 'ChangeTier', tier: 'basic', expires_at: new Date(now.getTime() + 14 * DAY).toISOString(), reason: 'trial', actor_id: admin });
    await run('carol', { type: 'Adjust', adjustment_id: randomUUID(), amount: 20, reason: 'support goodwill', actor_id: admin });
    await run('carol', spend(7, 'icon set'));
    await run('carol', { type: 'Reserve', reservation_id: randomUUID(), amount: 10, ttl_seconds: 300, description: 'pending job (expires on its own)' });
    print('demo data created');
  },
};

async function aiGeneration(deps: AppDeps, userId: string, print: (line: string) => void): Promise<void> {
  if (deps.config.ai.provider !== 'echo') return; // never call a real provider from a seed
  const result = await deps.aiGenerationService.generate({ userId, model: 'gpt-3.5-turbo', prompt: 'Name three colours.', requestId: `seed-demo-${randomUUID()}` });
  print(`  alice  AI generate  balance ${result.balance_remaining} @ ${result.position}`);
}
