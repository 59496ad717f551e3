import SQLite from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestContext, type TestContext } from '../helpers/context.ts';
import { dialectUnderTest } from '../helpers/database.ts';

/**
 * The in-memory session cache (SQLite only): it must never let a revoked session, a disabled
 * account or a changed role through, and it must actually spare the lookup.
 */
describe.skipIf(dialectUnderTest !== 'sqlite')('session cache', () => {
  let ctx: TestContext;
  let lookups = 0;
  beforeAll(async () => {
    ctx = await createTestContext();
    const reader = ctx.database.handle.reader!;
    const all = reader.all.bind(reader);
    reader.all = (text, parameters) => {
      if (text.includes('from "sessions"')) lookups++;
      return all(text, parameters);
    };
  });
  afterAll(() => ctx.close());

  const me = (headers: Record<string, string>) =>
    ctx.app.inject({ method: 'GET', url: '/api/v1/contacts', headers });

  it('serves repeated requests without looking the session up again', async () => {
    const owner = await ctx.tenant();
    expect((await me(owner.headers)).statusCode).toBe(200);
    const before = lookups;
    for (let i = 0; i < 5; i++) expect((await me(owner.headers)).statusCode).toBe(200);
    expect(lookups).toBe(before);
  });

  it('keeps the cache valid across the idle-timeout touch, and refreshes after the ttl', async () => {
    const owner = await ctx.tenant();
    await me(owner.headers);
    ctx.clock.advance(31_000); // past the touch interval (and the ttl): one lookup, one touch
    const before = lookups;
    expect((await me(owner.headers)).statusCode).toBe(200);
    expect(lookups).toBe(before + 1);
    // The touch did not empty the cache: the next request needs no lookup.
    expect((await me(owner.headers)).statusCode).toBe(200);
    expect(lookups).toBe(before + 1);
    const row = await ctx.database.handle.db
      .selectFrom('sessions')
      .select('last_seen_at')
      .where('user_id', '=', owner.userId)
      .executeTakeFirstOrThrow();
    expect(row.last_seen_at).toBe(ctx.clock.now().toISOString());
  });

  it('refuses a session on the very next request after logout', async () => {
    const owner = await ctx.tenant();
    expect((await me(owner.headers)).statusCode).toBe(200);
    const out = await ctx.app.inject({
      method: 'POST',
      url: '/api/v1/auth/logout',
      headers: owner.headers,
    });
    expect(out.statusCode).toBe(204);
    expect((await me(owner.headers)).statusCode).toBe(401);
  });

  it('applies a role change and a disabled account on the next request', async () => {
    const owner = await ctx.tenant();
    const member = await ctx.user(owner, 'agent');
    const second = await ctx.login(owner.tenant, member.email);
    expect((await me(member.headers)).statusCode).toBe(200);
    expect((await me(second.headers)).statusCode).toBe(200);
    const patch = (body: object) =>
      ctx.app.inject({
        method: 'PATCH',
        url: `/api/v1/users/${member.userId}`,
        headers: owner.headers,
        payload: body,
      });
    expect((await patch({ role: 'viewer' })).statusCode).toBe(200);
    const write = await ctx.app.inject({
      method: 'POST',
      url: '/api/v1/contacts',
      headers: member.headers,
      payload: { firstName: 'A', lastName: 'B' },
    });
    // Either the sessions were ended by the role change or the new role forbids the write.
    expect([401, 403]).toContain(write.statusCode);
    const again = await ctx.login(owner.tenant, member.email);
    expect((await me(again.headers)).statusCode).toBe(200);
    expect((await patch({ status: 'disabled' })).statusCode).toBe(200);
    expect((await me(again.headers)).statusCode).toBe(401);
  });

  it('sees another process revoking a session within the ttl', async () => {
    const owner = await ctx.tenant();
    expect((await me(owner.headers)).statusCode).toBe(200);
    // A second connection, as the command line would open: its writes are not watched.
    const other = new SQLite(ctx.database.handle.file);
    other
      .prepare('update sessions set revoked_at = ? where user_id = ?')
      .run(ctx.clock.now().toISOString(), owner.userId);
    other.close();
    ctx.clock.advance(1_000);
    expect((await me(owner.headers)).statusCode).toBe(401);
  });
});
