import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { runCli } from '../../src/cli/main.ts';
import type { SecurityReportData } from '../../src/modules/reports/data.ts';
import { createTestContext, PASSWORD, type Session, type TestContext } from '../helpers/context.ts';

const fixtures = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'fixtures');
const naughty = (
  JSON.parse(fs.readFileSync(path.join(fixtures, 'blns', 'blns.from-txt.json'), 'utf8')) as string[]
).filter((s) => s.length > 0 && s.length <= 200);

describe('security report', () => {
  let ctx: TestContext;
  let owner: Session;
  let member: Session;
  let start: Date;

  const report = (session: Session, query = '', accept?: string) =>
    ctx.app.inject({
      method: 'GET',
      url: `/api/v1/reports/security${query}`,
      headers: { ...session.headers, ...(accept ? { accept } : {}) },
    });

  async function append(
    session: Session,
    type: string,
    extra: { reason?: string; ip?: string; outcome?: 'success' | 'failure' } = {},
  ) {
    await ctx.database.handle.db.transaction().execute((trx) =>
      ctx.services.auditLog.append(trx, {
        tenantId: session.tenantId,
        type,
        actor: { kind: 'user', id: session.userId },
        request: { ip: extra.ip ?? '192.0.2.7' },
        outcome: extra.outcome ?? 'success',
        reason: extra.reason ?? null,
      }),
    );
  }

  beforeAll(async () => {
    ctx = await createTestContext();
    start = ctx.clock.now();
    owner = await ctx.tenant();
    member = await ctx.user(owner, 'agent');
    for (let i = 0; i < 3; i++) {
      const failed = await ctx.app.inject({
        method: 'POST',
        url: '/api/v1/auth/login',
        payload: { tenant: owner.tenant, email: member.email, password: `${PASSWORD}x` },
      });
      expect(failed.statusCode).toBe(401);
    }
    ctx.clock.advance(3 * 3_600_000);
    // Both signed in again (the first sessions have idled out): four sign-ins in all.
    member = await ctx.login(owner.tenant, member.email);
    owner = await ctx.login(owner.tenant, owner.email);
    for (let i = 0; i < 4; i++) await append(member, 'contact.field_read');
    await append(owner, 'contacts.exported');
    await append(owner, 'security.alert.raised', { reason: 'brute_force' });
    await append(owner, 'security.alert.raised', { reason: 'brute_force' });
    await append(owner, 'security.alert.raised', { reason: '<script>alert(1)</script>' });
    // Another tenant's activity never shows.
    const other = await ctx.tenant();
    await append(other, 'security.alert.raised', { reason: 'other_tenant_rule' });
    ctx.clock.advance(60_000);
  });
  afterAll(() => ctx.close());

  it('counts sign-ins, failures, alerts, sensitive reads, exports and addresses (JSON)', async () => {
    const res = await report(owner);
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    const data = res.json<SecurityReportData>();
    expect(data.tenant.slug).toBe(owner.tenant);
    expect(data.bucket).toBe('day');
    expect(data.totals.signIns).toBe(4);
    expect(data.totals.signInFailures).toBe(3);
    expect(data.signIns.reduce((n, s) => n + s.failed, 0)).toBe(3);
    expect(data.alertsByRule).toEqual([
      { rule: 'brute_force', count: 2 },
      { rule: '<script>alert(1)</script>', count: 1 },
    ]);
    const byUser = new Map(data.sensitiveByUser.map((u) => [u.userId, u]));
    expect(byUser.get(member.userId)).toMatchObject({ reads: 4, exports: 0 });
    expect(byUser.get(owner.userId)).toMatchObject({ reads: 0, exports: 1 });
    // 127.0.0.1 ties at 8 since user creation is audited (user.created): both lead the list.
    expect(data.topAddresses.slice(0, 2)).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ ip: '192.0.2.7', events: 8 }),
        expect.objectContaining({ ip: '127.0.0.1', events: 8 }),
      ]),
    );
  });

  it('buckets by hour for short ranges and keeps to the range', async () => {
    const from = start.toISOString();
    const to = new Date(start.getTime() + 2 * 3_600_000).toISOString();
    const res = await report(owner, `?from=${from}&to=${to}`);
    expect(res.statusCode).toBe(200);
    const data = res.json<SecurityReportData>();
    expect(data.bucket).toBe('hour');
    expect(data.signIns.length).toBeGreaterThanOrEqual(2);
    expect(data.totals.signInFailures).toBe(3);
    // The later sign-in, reads and alerts happened after `to`.
    expect(data.totals.signIns).toBe(2);
    expect(data.alertsByRule).toEqual([]);
  });

  it('renders HTML with SVG charts, escaped, under a CSP that runs nothing', async () => {
    for (const res of [await report(owner, '?format=html'), await report(owner, '', 'text/html')]) {
      expect(res.statusCode).toBe(200);
      expect(res.headers['content-type']).toBe('text/html; charset=utf-8');
      expect(res.headers['content-security-policy']).toContain("default-src 'none'");
      expect(res.body).toContain('<svg');
      expect(res.body).toContain('brute_force');
      expect(res.body).not.toContain('<script');
      expect(res.body).toContain('&lt;script&gt;alert(1)&lt;/script&gt;');
    }
  });

  it('escapes every hostile rule name and address', async () => {
    const t = await ctx.tenant();
    for (const [i, s] of naughty.entries()) {
      await append(t, 'security.alert.raised', { reason: s, ip: i % 2 === 0 ? s : '198.51.100.1' });
    }
    ctx.clock.advance(1_000);
    const res = await report(t, '?format=html');
    expect(res.statusCode).toBe(200);
    // Only ten rules and addresses are shown; none of the markup they carry survives as markup.
    expect(res.body).not.toMatch(/<(?:script|img|iframe|svg\s+onload|a\s)/i);
    const json = await report(t);
    expect(json.statusCode).toBe(200);
    const data = json.json<SecurityReportData>();
    expect(data.totals.alerts).toBe(naughty.length);
    expect(data.alertsByRule).toHaveLength(10);
  });

  it('is for administrators only', async () => {
    const res = await report(member);
    expect(res.statusCode).toBe(403);
    expect(res.json<{ code: string }>().code).toBe('policy.forbidden');
  });

  it('refuses unusable ranges with a clear problem', async () => {
    for (const q of [
      '?from=2026-02-01&to=2026-01-01',
      '?from=2020-01-01&to=2026-01-01',
      '?from=yesterday',
      "?to=2026-01-01'%20or%201=1--",
    ]) {
      const res = await report(owner, q);
      expect(res.statusCode, q).toBe(400);
      expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(res.json<{ code: string }>().code).toBe('report.invalid_range');
    }
    const unknown = await report(owner, '?tenant=other');
    expect(unknown.statusCode).toBe(400);
    expect(unknown.json<{ code: string }>().code).toBe('request.invalid');
  });

  it('custos report security writes the same report from the command line', async () => {
    const saved = { ...process.env };
    process.env.CUSTOS_DATA_DIR = ctx.database.dataDir;
    if (ctx.database.url) process.env.CUSTOS_DATABASE_URL = ctx.database.url;
    else delete process.env.CUSTOS_DATABASE_URL;
    const out: string[] = [];
    const err: string[] = [];
    const spy = vi
      .spyOn(process.stderr, 'write')
      .mockImplementation((chunk: string | Uint8Array) => {
        err.push(String(chunk));
        return true;
      });
    try {
      const to = new Date(ctx.clock.now().getTime() + 1).toISOString();
      const status = await runCli(
        ['report', 'security', '--tenant', owner.tenant, '--format', 'json', '--to', to],
        (line) => out.push(line),
      );
      expect(status, err.join('')).toBe(0);
      const data = JSON.parse(out.join('\n')) as SecurityReportData;
      expect(data.totals.signInFailures).toBe(3);
      expect(data.alertsByRule[0]).toEqual({ rule: 'brute_force', count: 2 });
      const file = path.join(ctx.database.dataDir, 'report.html');
      expect(
        await runCli(['report', 'security', '--tenant', owner.tenant, '--to', to, '--out', file]),
      ).toBe(0);
      expect(fs.readFileSync(file, 'utf8')).toContain('<svg');
      expect(fs.statSync(file).mode & 0o777).toBe(0o600);
      expect(await runCli(['report', 'security', '--tenant', 'no-such-tenant'])).toBe(1);
    } finally {
      spy.mockRestore();
      process.env = saved;
    }
  });
});
