import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createIdentityAuditSink, DECOY_TENANT_ID } from '../../src/modules/audit/identity-sink.ts';
import type { AuditRecorder } from '../../src/modules/audit/service.ts';
import { DECOY_PREFIX } from '../../src/modules/auth/throttle.ts';
import { createTestContext, PASSWORD, type Session, type TestContext } from '../helpers/context.ts';

let ctx: TestContext;
let owner: Session;
let address = 0;
const nextAddress = () => `192.0.2.${++address}`;

beforeAll(async () => {
  ctx = await createTestContext();
  owner = await ctx.tenant();
});
afterAll(async () => ctx?.close());

const attempt = (
  payload: { tenant: string; email: string; password: string },
  ip = nextAddress(),
) => ctx.app.inject({ method: 'POST', url: '/api/v1/auth/login', remoteAddress: ip, payload });

const db = () => ctx.database.handle.db;

describe('refused sign-ins do the same work whatever the reason', () => {
  it('gives one answer for unknown tenant, unknown user, wrong password and locked account', async () => {
    const locked = await ctx.user(owner, 'agent');
    for (let i = 0; i < 5; i++) {
      await attempt({
        tenant: owner.tenant,
        email: locked.email,
        password: 'wrong password one two',
      });
    }
    const answers = await Promise.all([
      attempt({ tenant: 'no-such-tenant', email: owner.email, password: PASSWORD }),
      attempt({ tenant: owner.tenant, email: 'nobody@nowhere.example', password: PASSWORD }),
      attempt({ tenant: owner.tenant, email: owner.email, password: 'wrong password one two' }),
      attempt({ tenant: owner.tenant, email: locked.email, password: PASSWORD }),
    ]);
    const bodies = answers.map((r) => {
      const body = r.json<Record<string, unknown>>();
      delete body.instance;
      return { status: r.statusCode, ...body };
    });
    expect(bodies[0]).toMatchObject({ status: 401, code: 'auth.invalid_credentials' });
    for (const b of bodies) expect(b).toEqual(bodies[0]);
  });

  it('claims a decoy account counter for an unknown user, as a known one claims its own', async () => {
    const ip = '198.51.100.77';
    await attempt({ tenant: owner.tenant, email: 'ghost@nowhere.example', password: PASSWORD }, ip);
    await attempt(
      { tenant: 'ghost-tenant', email: 'ghost@nowhere.example', password: PASSWORD },
      ip,
    );
    const decoys = await db()
      .selectFrom('auth_throttle')
      .select(['key', 'count'])
      .where('scope', '=', 'account')
      .where('key', 'like', `${DECOY_PREFIX}%`)
      .execute();
    expect(decoys.length).toBeGreaterThanOrEqual(1);
    expect(decoys.some((d) => Number(d.count) >= 2)).toBe(true);
    // Decoys never lock a real account.
    const real = await attempt(
      { tenant: owner.tenant, email: owner.email, password: PASSWORD },
      ip,
    );
    expect(real.statusCode).toBe(200);
  });

  it('does a real audit append for an unknown tenant, rolled back so nothing persists', async () => {
    const appended: string[] = [];
    const log: AuditRecorder = {
      append: async (trx, event) => {
        appended.push(event.tenantId);
        return ctx.services.auditLog.append(trx, event);
      },
    };
    const sink = createIdentityAuditSink({ db: db(), log });
    await sink.record({
      type: 'auth.login.failed',
      at: ctx.clock.now().toISOString(),
      reason: 'unknown_user',
      tenantId: null,
      userId: null,
    });
    expect(appended).toEqual([DECOY_TENANT_ID]);
    await attempt({ tenant: 'still-no-tenant', email: owner.email, password: PASSWORD });
    const rows = await db()
      .selectFrom('audit_events')
      .select('id')
      .where('tenant_id', '=', DECOY_TENANT_ID)
      .execute();
    expect(rows).toEqual([]);
    const tree = await db()
      .selectFrom('audit_tree')
      .select('tenant_id')
      .where('tenant_id', '=', DECOY_TENANT_ID)
      .execute();
    expect(tree).toEqual([]);
  });
});
