import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ENDED_SESSION_RETENTION_MS, startAuthPurge } from '../../src/modules/auth/purge.ts';
import { createTestContext, PASSWORD, type Session, type TestContext } from '../helpers/context.ts';
import { enrolTotp } from '../helpers/totp.ts';

let ctx: TestContext;
const HOUR = 3_600_000;

beforeAll(async () => {
  ctx = await createTestContext();
});
afterAll(async () => ctx?.close());

const db = () => ctx.database.handle.db;
const count = async (table: 'sessions' | 'mfa_challenges', userId: string) =>
  (await db().selectFrom(table).select('id').where('user_id', '=', userId).execute()).length;

async function withTotp(owner: Session) {
  const user = await ctx.user(owner, 'agent');
  await enrolTotp(ctx, user);
  return user;
}

describe('purge of expired authentication rows', () => {
  it('deletes sign-in challenges once past their five minutes, and only those', async () => {
    const owner = await ctx.tenant();
    const user = await withTotp(owner);
    const password = () =>
      ctx.app.inject({
        method: 'POST',
        url: '/api/v1/auth/login',
        remoteAddress: '203.0.113.7',
        payload: { tenant: user.tenant, email: user.email, password: PASSWORD },
      });
    const old = (await password()).json<{ mfaToken: string }>().mfaToken;
    ctx.clock.advance(4 * 60_000);
    await password();
    expect(await count('mfa_challenges', user.userId)).toBe(2);
    ctx.clock.advance(60_000);
    const result = await ctx.services.authPurge();
    expect(result.mfaChallenges).toBe(1);
    expect(await count('mfa_challenges', user.userId)).toBe(1);
    // The purged token answers as an expired one did.
    const late = await ctx.app.inject({
      method: 'POST',
      url: '/api/v1/auth/login/mfa',
      remoteAddress: '203.0.113.7',
      payload: { mfaToken: old, code: '000000' },
    });
    expect(late.statusCode).toBe(401);
    expect(late.json<{ code: string }>().code).toBe('auth.mfa_challenge_invalid');
  });

  it('keeps ended sessions a day, then deletes them; live sessions stay', async () => {
    const owner = await ctx.tenant();
    const gone = await ctx.user(owner, 'agent');
    const out = await ctx.app.inject({
      method: 'POST',
      url: '/api/v1/auth/logout',
      headers: gone.headers,
    });
    expect(out.statusCode).toBe(204);
    const idle = await ctx.user(owner, 'viewer');
    ctx.clock.advance(ENDED_SESSION_RETENTION_MS - 1);
    await ctx.services.authPurge();
    expect(await count('sessions', gone.userId)).toBe(1);
    ctx.clock.advance(1);
    const live = await ctx.login(owner.tenant, owner.email);
    await ctx.services.authPurge();
    expect(await count('sessions', gone.userId)).toBe(0);
    // Never revoked (nobody came back after the idle timeout): kept a day past its absolute end.
    expect(await count('sessions', idle.userId)).toBe(1);
    const me = await ctx.app.inject({
      method: 'GET',
      url: '/api/v1/auth/me',
      headers: live.headers,
    });
    expect(me.statusCode).toBe(200);
    ctx.clock.advance(12 * HOUR);
    await ctx.services.authPurge();
    expect(await count('sessions', idle.userId)).toBe(0);
    // The owner's first session went with it; the one opened a day later stays.
    expect(await count('sessions', owner.userId)).toBe(1);
  });

  it('deletes expired per-address counters but keeps account counters', async () => {
    const owner = await ctx.tenant();
    const wrong = await ctx.app.inject({
      method: 'POST',
      url: '/api/v1/auth/login',
      remoteAddress: '203.0.113.99',
      payload: { tenant: owner.tenant, email: owner.email, password: 'not the password at all' },
    });
    expect(wrong.statusCode).toBe(401);
    const rows = () => db().selectFrom('auth_throttle').select(['scope', 'key']).execute();
    expect((await rows()).some((r) => r.scope === 'address')).toBe(true);
    ctx.clock.advance(49 * HOUR);
    const result = await ctx.services.authPurge();
    expect(result.throttleCounters).toBeGreaterThanOrEqual(1);
    const left = await rows();
    expect(left.some((r) => r.scope === 'address')).toBe(false);
    expect(left.some((r) => r.scope === 'account' && r.key === owner.userId)).toBe(true);
  });

  it('runs periodically once started, logs failures, and stops', async () => {
    let runs = 0;
    const lines: string[] = [];
    const log = {
      info: (_o: object, msg: string) => void lines.push(`info ${msg}`),
      warn: (_o: object, msg: string) => void lines.push(`warn ${msg}`),
    };
    const stop = startAuthPurge(
      async () => {
        runs++;
        if (runs === 2) throw new Error('database away');
        return { mfaChallenges: runs === 1 ? 1 : 0, sessions: 0, throttleCounters: 0 };
      },
      { intervalMs: 20, log },
    );
    await sleep(110);
    await stop();
    const seen = runs;
    expect(seen).toBeGreaterThanOrEqual(3);
    expect(lines).toContain('info expired authentication rows purged');
    expect(lines).toContain('warn purge of expired authentication rows failed');
    await sleep(60);
    expect(runs).toBe(seen);
  });
});
