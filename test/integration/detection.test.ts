import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEventInput } from '../../src/modules/audit/event.ts';
import { createDetectionWorker } from '../../src/modules/detection/worker.ts';
import { noopAlertNotifier } from '../../src/modules/detection/notifier.ts';
import { createTestContext, PASSWORD, type Session, type TestContext } from '../helpers/context.ts';

let ctx: TestContext;

beforeAll(async () => {
  ctx = await createTestContext();
});
afterAll(async () => ctx?.close());

type Alert = {
  id: string;
  rule: string;
  severity: string;
  status: string;
  subjectUserId: string | null;
  subjectIp: string | null;
  count: number;
  details: Record<string, unknown>;
};

const run = () => ctx.services.detectionWorker.runOnce();

const settings = (s: Session, payload: object) =>
  ctx.app.inject({
    method: 'PATCH',
    url: '/api/v1/detection/settings',
    headers: s.headers,
    payload,
  });

async function configure(s: Session, payload: object) {
  const res = await settings(s, payload);
  expect(res.statusCode, res.body).toBe(200);
}

async function alerts(s: Session, query = ''): Promise<Alert[]> {
  const res = await ctx.app.inject({ url: `/api/v1/alerts${query}`, headers: s.headers });
  expect(res.statusCode, res.body).toBe(200);
  return res.json<{ items: Alert[] }>().items;
}

const login = (s: Session, email: string, password: string, remoteAddress = '127.0.0.1') =>
  ctx.app.inject({
    method: 'POST',
    url: '/api/v1/auth/login',
    payload: { tenant: s.tenant, email, password },
    remoteAddress,
  });

const me = (s: Session) => ctx.app.inject({ url: '/api/v1/auth/me', headers: s.headers });

/** Appends an event as the module that will emit it (reads, role changes, break-glass) would. */
async function append(event: Omit<AuditEventInput, 'tenantId'> & { tenantId: string }) {
  await ctx.database.handle.db
    .transaction()
    .execute((trx) => ctx.services.auditLog.append(trx, event));
}

async function auditEvents(s: Session, type: string) {
  const res = await ctx.app.inject({
    url: `/api/v1/audit/events?type=${type}&limit=200`,
    headers: s.headers,
  });
  expect(res.statusCode).toBe(200);
  return res.json<{
    items: {
      target: { type: string; id: string } | null;
      reason: string | null;
      fields: string[];
    }[];
  }>().items;
}

describe('brute force on an account', () => {
  it('fires at the threshold, not below, locks the account and revokes its sessions', async () => {
    const owner = await ctx.tenant();
    const member = await ctx.user(owner, 'agent');
    await configure(owner, {
      rules: {
        brute_force: {
          failures: 3,
          windowMinutes: 10,
          actions: ['lock_account', 'revoke_sessions'],
        },
        new_device: { enabled: false },
      },
    });
    for (let i = 0; i < 2; i++) {
      expect((await login(member, member.email, 'wrong password', '192.0.2.10')).statusCode).toBe(
        401,
      );
    }
    await run();
    expect(await alerts(owner, '?rule=brute_force')).toHaveLength(0);
    expect((await me(member)).statusCode).toBe(200);

    expect((await login(member, member.email, 'wrong password', '192.0.2.10')).statusCode).toBe(
      401,
    );
    await run();
    const [alert, ...more] = await alerts(owner, '?rule=brute_force');
    expect(more).toHaveLength(0);
    expect(alert).toMatchObject({
      rule: 'brute_force',
      severity: 'high',
      status: 'open',
      subjectUserId: member.userId,
      details: { failures: 3, threshold: 3, actions: ['lock_account', 'revoke_sessions'] },
    });
    // Raised with its audit event: reason = rule id, target = the alert (the report's contract).
    const raised = await auditEvents(owner, 'security.alert.raised');
    expect(raised).toEqual([
      expect.objectContaining({ reason: 'brute_force', target: { type: 'alert', id: alert!.id } }),
    ]);
    // Sessions revoked, and the right password no longer signs in (locked until unlocked).
    expect((await me(member)).statusCode).toBe(401);
    ctx.clock.advance(60 * 60_000);
    const owner2 = await ctx.login(owner.tenant, owner.email);
    expect((await login(member, member.email, PASSWORD)).statusCode).toBe(401);
    const unlock = await ctx.app.inject({
      method: 'POST',
      url: `/api/v1/users/${member.userId}/unlock`,
      headers: owner2.headers,
    });
    expect(unlock.statusCode).toBe(200);
    expect((await login(member, member.email, PASSWORD)).statusCode).toBe(200);
  });

  it('does not fire when the failures are spread beyond the window', async () => {
    const owner = await ctx.tenant();
    const member = await ctx.user(owner, 'agent');
    await configure(owner, { rules: { brute_force: { failures: 3, windowMinutes: 5 } } });
    await login(member, member.email, 'nope nope nope');
    await login(member, member.email, 'nope nope nope');
    ctx.clock.advance(6 * 60_000);
    await login(member, member.email, 'nope nope nope');
    await run();
    expect(await alerts(owner, '?rule=brute_force')).toHaveLength(0);
  });
});

describe('password spraying and credential stuffing from one address', () => {
  it('fires when one address fails against enough distinct users', async () => {
    const owner = await ctx.tenant();
    const users = [
      await ctx.user(owner, 'agent'),
      await ctx.user(owner, 'agent'),
      await ctx.user(owner, 'viewer'),
    ];
    await configure(owner, {
      rules: { password_spraying: { distinctUsers: 3, failures: 1000, windowMinutes: 15 } },
    });
    const ip = '203.0.113.77';
    await login(owner, users[0]!.email, 'Summer2026!', ip);
    await login(owner, users[1]!.email, 'Summer2026!', ip);
    await login(owner, users[1]!.email, 'Summer2026!', ip);
    await run();
    expect(await alerts(owner, '?rule=password_spraying')).toHaveLength(0);
    await login(owner, users[2]!.email, 'Summer2026!', ip);
    await run();
    const found = await alerts(owner, '?rule=password_spraying');
    expect(found).toHaveLength(1);
    expect(found[0]).toMatchObject({
      subjectIp: ip,
      subjectUserId: null,
      details: { distinctUsers: 3, failures: 4 },
    });
    // Further failures in the window count on the same alert.
    await login(owner, users[0]!.email, 'Winter2026!', ip);
    await run();
    const again = await alerts(owner, '?rule=password_spraying');
    expect(again).toHaveLength(1);
    expect(again[0]!.count).toBe(2);
  });

  it('fires on many failures from one address, unknown accounts included (stuffing)', async () => {
    const owner = await ctx.tenant();
    await configure(owner, {
      rules: { password_spraying: { distinctUsers: 1000, failures: 4, windowMinutes: 15 } },
    });
    const ip = '203.0.113.78';
    for (let i = 0; i < 3; i++) await login(owner, `nobody${i}@example.org`, 'x', ip);
    await run();
    expect(await alerts(owner, '?rule=password_spraying')).toHaveLength(0);
    await login(owner, 'nobody9@example.org', 'x', ip);
    await run();
    expect(await alerts(owner, '?rule=password_spraying')).toHaveLength(1);
  });
});

describe('bulk reads and exports of personal records', () => {
  it('fires at N reads by one actor in T minutes and blocks that user’s exports', async () => {
    const owner = await ctx.tenant();
    const member = await ctx.user(owner, 'agent');
    const other = await ctx.user(owner, 'agent');
    await configure(owner, {
      rules: { bulk_read: { records: 5, windowMinutes: 10, actions: ['block_exports'] } },
      exportBlockMinutes: 2,
    });
    const read = (who: Session, type = 'contact.field_read') =>
      append({
        tenantId: owner.tenantId,
        type,
        actor: { kind: 'user', id: who.userId },
        target: { type: 'contact', id: crypto.randomUUID() },
        fields: ['email'],
      });
    for (let i = 0; i < 3; i++) await read(member);
    await read(member, 'contacts.exported');
    for (let i = 0; i < 6; i++) await read(other, 'record.read'); // another actor: own count
    await run();
    expect(
      (await alerts(owner, '?rule=bulk_read')).filter((a) => a.subjectUserId === member.userId),
    ).toHaveLength(0);
    const exported = await ctx.app.inject({
      url: '/api/v1/contacts/export',
      headers: member.headers,
    });
    expect(exported.statusCode).toBe(200);

    await read(member);
    await run();
    const mine = (await alerts(owner, '?rule=bulk_read')).filter(
      (a) => a.subjectUserId === member.userId,
    );
    expect(mine).toHaveLength(1);
    expect(mine[0]!.details).toMatchObject({
      records: 5,
      threshold: 5,
      actions: ['block_exports'],
    });

    const blocked = await ctx.app.inject({
      url: '/api/v1/contacts/export',
      headers: member.headers,
    });
    expect(blocked.statusCode).toBe(403);
    expect(blocked.json()).toMatchObject({ code: 'export.blocked' });
    expect(blocked.headers['content-type']).toContain('application/problem+json');
    ctx.clock.advance(2 * 60_000 + 1);
    const later = await ctx.app.inject({ url: '/api/v1/contacts/export', headers: member.headers });
    expect(later.statusCode).toBe(200);
  });
});

describe('access outside business hours', () => {
  it('raises on a sign-in outside the tenant’s hours in its time zone, not within them', async () => {
    const owner = await ctx.tenant();
    // The owner's first sign-in is at "now", any hour (earlier tests move the clock on): judged
    // before the rule and hours below exist, it raises nothing either way.
    await run();
    await configure(owner, {
      rules: { off_hours: { enabled: true }, new_device: { enabled: false } },
      businessHours: {
        timeZone: 'Europe/Berlin',
        start: '08:00',
        end: '18:00',
        days: [1, 2, 3, 4, 5],
      },
    });
    // Wednesday 2026-01-14, 10:00 in Berlin (UTC+1).
    ctx.clock.set(new Date('2026-01-14T09:00:00Z'));
    await ctx.login(owner.tenant, owner.email);
    await run();
    expect(await alerts(owner, '?rule=off_hours')).toHaveLength(0);
    // 17:59 Berlin is still in; 18:00 is out.
    ctx.clock.set(new Date('2026-01-14T16:59:00Z'));
    await ctx.login(owner.tenant, owner.email);
    await run();
    expect(await alerts(owner, '?rule=off_hours')).toHaveLength(0);
    ctx.clock.set(new Date('2026-01-14T17:00:00Z'));
    const late = await ctx.login(owner.tenant, owner.email);
    await run();
    const found = await alerts(late, '?rule=off_hours');
    expect(found).toHaveLength(1);
    expect(found[0]).toMatchObject({ severity: 'low', subjectUserId: owner.userId });
    ctx.clock.set(new Date());
  });
});

describe('sign-in from a new device or address', () => {
  it('raises for an address the user never used, and can require step-up', async () => {
    const owner = await ctx.tenant();
    const admin = await ctx.user(owner, 'admin'); // first sign-in: nothing to compare with
    await configure(owner, { rules: { new_device: { actions: ['require_step_up'] } } });
    await ctx.login(owner.tenant, admin.email); // same address again
    await run();
    expect(await alerts(owner, '?rule=new_device')).toHaveLength(0);

    const res = await login(owner, admin.email, PASSWORD, '198.51.100.23');
    expect(res.statusCode).toBe(200);
    await run();
    const found = await alerts(owner, '?rule=new_device');
    expect(found).toHaveLength(1);
    expect(found[0]).toMatchObject({
      subjectUserId: admin.userId,
      subjectIp: '198.51.100.23',
      severity: 'medium',
      details: { newAddress: true },
    });
    // The user's sessions must prove themselves again before a sensitive action.
    const key = await ctx.app.inject({
      method: 'POST',
      url: '/api/v1/api-keys',
      headers: admin.headers,
      payload: { name: 'k' },
    });
    expect(key.statusCode).toBe(401);
    expect(key.json()).toMatchObject({ code: 'auth.step_up_required' });
  });
});

describe('sign-in from a new user agent', () => {
  it('raises for a known address with a browser the user never signed in with', async () => {
    const owner = await ctx.tenant();
    const member = await ctx.user(owner, 'agent');
    const signIn = (ua: string) =>
      ctx.app.inject({
        method: 'POST',
        url: '/api/v1/auth/login',
        payload: { tenant: owner.tenant, email: member.email, password: PASSWORD },
        headers: { 'user-agent': ua },
        remoteAddress: '198.51.100.40',
      });
    expect((await signIn('Firefox/140')).statusCode).toBe(200);
    expect((await signIn('Firefox/140')).statusCode).toBe(200);
    await run();
    const before = (await alerts(owner, '?rule=new_device')).length;
    expect((await signIn('curl/8.5')).statusCode).toBe(200);
    await run();
    const found = await alerts(owner, '?rule=new_device');
    expect(found).toHaveLength(before + 1);
    expect(found[0]).toMatchObject({
      subjectUserId: member.userId,
      details: { newAddress: false, newUserAgent: true },
    });
  });
});

describe('privilege escalation and break-glass', () => {
  it('raises when a user or an API key is given admin, and can revoke the keys', async () => {
    const owner = await ctx.tenant();
    const admin = await ctx.user(owner, 'admin');
    const member = await ctx.user(owner, 'agent');
    await run();
    // Creating an administrator is a grant of admin.
    expect(await alerts(owner, '?rule=privilege_escalation')).toEqual([
      expect.objectContaining({
        subjectUserId: admin.userId,
        details: expect.objectContaining({ eventType: 'user.created', role: 'admin' }),
      }),
    ]);
    await configure(owner, { rules: { privilege_escalation: { actions: ['revoke_api_keys'] } } });
    const key = async (role: string) => {
      const res = await ctx.app.inject({
        method: 'POST',
        url: '/api/v1/api-keys',
        headers: admin.headers,
        payload: { name: `k-${role}`, role },
      });
      expect(res.statusCode, res.body).toBe(201);
      return res.json<{ id: string; key: string }>();
    };
    const setRole = async (userId: string, role: string) => {
      const res = await ctx.app.inject({
        method: 'PATCH',
        url: `/api/v1/users/${userId}`,
        headers: owner.headers,
        payload: { role },
      });
      expect(res.statusCode, res.body).toBe(200);
    };
    // Below admin: nothing.
    await setRole(member.userId, 'viewer');
    const memberKey = await key('agent');
    const bearer = { authorization: `Bearer ${memberKey.key}` };
    expect((await ctx.app.inject({ url: '/api/v1/contacts', headers: bearer })).statusCode).toBe(
      200,
    );
    await run();
    expect(await alerts(owner, '?rule=privilege_escalation')).toHaveLength(1);

    // An admin key: alert, and every key of its owner revoked.
    const adminKey = await key('admin');
    await run();
    const byKey = (await alerts(owner, '?rule=privilege_escalation')).filter(
      (a) => a.details.apiKeyId === adminKey.id,
    );
    expect(byKey).toEqual([
      expect.objectContaining({
        subjectUserId: admin.userId,
        details: expect.objectContaining({ actions: ['revoke_api_keys'] }),
      }),
    ]);
    const refused = await ctx.app.inject({ url: '/api/v1/contacts', headers: bearer });
    expect(refused.statusCode).toBe(401);
    expect(refused.json()).toMatchObject({ code: 'auth.api_key_invalid' });

    // A role raised to admin.
    await setRole(member.userId, 'admin');
    await run();
    expect(
      (await alerts(owner, '?rule=privilege_escalation')).filter(
        (a) => a.subjectUserId === member.userId,
      ),
    ).toEqual([
      expect.objectContaining({
        details: expect.objectContaining({ eventType: 'user.updated' }),
      }),
    ]);
  });

  it('raises for a grant of owner, and not for names or reasons Custos does not emit', async () => {
    const owner = await ctx.tenant();
    const member = await ctx.user(owner, 'agent');
    await run();
    const before = (await alerts(owner, '?rule=privilege_escalation')).length;
    // Names nobody writes, and a bare role as reason: ignored (they used to be listed).
    for (const type of ['user.role_changed', 'api_key.role_changed', 'user.role.changed']) {
      await append({
        tenantId: owner.tenantId,
        type,
        actor: { kind: 'user', id: owner.userId },
        target: { type: 'user', id: member.userId },
        reason: 'role_admin',
      });
    }
    await append({
      tenantId: owner.tenantId,
      type: 'user.updated',
      actor: { kind: 'user', id: owner.userId },
      target: { type: 'user', id: member.userId },
      reason: 'admin',
    });
    await run();
    expect(await alerts(owner, '?rule=privilege_escalation')).toHaveLength(before);
    const res = await ctx.app.inject({
      method: 'PATCH',
      url: `/api/v1/users/${member.userId}`,
      headers: owner.headers,
      payload: { role: 'owner' },
    });
    expect(res.statusCode, res.body).toBe(200);
    await run();
    expect(
      (await alerts(owner, '?rule=privilege_escalation')).filter(
        (a) => a.subjectUserId === member.userId,
      ),
    ).toEqual([
      expect.objectContaining({
        details: expect.objectContaining({ eventType: 'user.updated', role: 'owner' }),
      }),
    ]);
  });

  it('raises a critical alert on break-glass use (matched by event name)', async () => {
    const owner = await ctx.tenant();
    await append({
      tenantId: owner.tenantId,
      type: 'auth.break_glass.opened',
      actor: { kind: 'user', id: owner.userId },
      reason: 'patient_emergency',
    });
    await run();
    expect(await alerts(owner, '?rule=break_glass&severity=critical')).toEqual([
      expect.objectContaining({ subjectUserId: owner.userId, status: 'open' }),
    ]);
  });
});

describe('alerts raised from outside the stream', () => {
  it('raises a failed audit verification once per dedup key, counting repeats', async () => {
    const owner = await ctx.tenant();
    const raise = (key: string) =>
      ctx.services.alerts.raise({
        tenantId: owner.tenantId,
        rule: 'audit_verification_failed',
        dedupKey: key,
        details: { firstBadLeaf: 3 },
      });
    expect(await raise('tree:10')).toMatchObject({ rule: 'audit_verification_failed', count: 1 });
    expect(await raise('tree:10')).toBeNull();
    expect(await raise('tree:12')).toMatchObject({ count: 2 });
    expect(await alerts(owner, '?rule=audit_verification_failed')).toHaveLength(1);
    await configure(owner, { rules: { key_rotation_overdue: { enabled: false } } });
    expect(
      await ctx.services.alerts.raise({
        tenantId: owner.tenantId,
        rule: 'key_rotation_overdue',
        dedupKey: 'k1',
        details: {},
      }),
    ).toBeNull();
  });
});

describe('the worker', () => {
  it('neither repeats nor loses events across restarts and concurrent runs', async () => {
    const owner = await ctx.tenant();
    await run();
    const fresh = () =>
      createDetectionWorker({
        db: ctx.database.handle.db,
        dialect: ctx.database.handle.dialect,
        clock: ctx.clock,
        audit: ctx.services.auditLog,
        throttle: { lock: async () => undefined },
        notifier: noopAlertNotifier,
        users: ctx.services.userCrypto,
      });
    const breakGlass = () =>
      append({
        tenantId: owner.tenantId,
        type: 'auth.break_glass.opened',
        actor: { kind: 'user', id: owner.userId },
      });
    await breakGlass();
    await breakGlass();
    // Two "nodes" at once: each event is evaluated by exactly one of them.
    const [a, b] = await Promise.all([fresh().runOnce(), fresh().runOnce()]);
    expect(a.alerts + b.alerts).toBe(2);
    // A restarted worker starts from the stored cursor.
    expect(await fresh().runOnce()).toEqual({ events: 0, alerts: 0 });
    await breakGlass();
    expect((await fresh().runOnce()).alerts).toBe(1);
    expect(await alerts(owner, '?rule=break_glass')).toHaveLength(3);
  });

  it('keeps evaluating other tenants when one tenant fails, and catches up once fixed', async () => {
    await run();
    const broken = await ctx.tenant();
    const healthy = await ctx.tenant();
    const db = ctx.database.handle.db;
    await db
      .insertInto('detection_settings')
      .values({
        tenant_id: broken.tenantId,
        settings: '{not json',
        updated_at: '2026-01-01T00:00:00.000Z',
      })
      .execute();
    for (const t of [broken, healthy]) {
      await append({
        tenantId: t.tenantId,
        type: 'auth.break_glass.opened',
        actor: { kind: 'user', id: t.userId },
      });
    }
    await expect(run()).rejects.toThrow();
    expect(await alerts(healthy, '?rule=break_glass')).toHaveLength(1);
    expect(await alerts(broken, '?rule=break_glass')).toHaveLength(0);
    await db
      .updateTable('detection_settings')
      .set({ settings: '{}' })
      .where('tenant_id', '=', broken.tenantId)
      .execute();
    await run();
    expect(await alerts(broken, '?rule=break_glass')).toHaveLength(1);
    expect(await alerts(healthy, '?rule=break_glass')).toHaveLength(1);
  });

  it('calls the notifier with the tenant’s owners and admins', async () => {
    const owner = await ctx.tenant();
    const admin = await ctx.user(owner, 'admin');
    await ctx.user(owner, 'agent');
    await run();
    const told: { rule: string; to: string[] }[] = [];
    const worker = createDetectionWorker({
      db: ctx.database.handle.db,
      dialect: ctx.database.handle.dialect,
      clock: ctx.clock,
      audit: ctx.services.auditLog,
      throttle: { lock: async () => undefined },
      notifier: {
        notify: async (alert, recipients) =>
          void told.push({ rule: alert.rule, to: recipients.map((r) => r.email).sort() }),
      },
      users: ctx.services.userCrypto,
    });
    await append({
      tenantId: owner.tenantId,
      type: 'auth.break_glass.opened',
      actor: { kind: 'user', id: admin.userId },
    });
    await worker.runOnce();
    expect(told).toEqual([{ rule: 'break_glass', to: [admin.email, owner.email].sort() }]);
  });
});

describe('alerts API', () => {
  async function twoAlerts() {
    const owner = await ctx.tenant();
    for (let i = 0; i < 2; i++) {
      await append({
        tenantId: owner.tenantId,
        type: 'auth.break_glass.opened',
        actor: { kind: 'user', id: owner.userId },
      });
    }
    await run();
    return owner;
  }
  const post = (s: Session, id: string, action: string) =>
    ctx.app.inject({ method: 'POST', url: `/api/v1/alerts/${id}/${action}`, headers: s.headers });

  it('lists with filters and cursor pagination', async () => {
    const owner = await twoAlerts();
    const first = await ctx.app.inject({ url: '/api/v1/alerts?limit=1', headers: owner.headers });
    const page1 = first.json<{ items: Alert[]; nextCursor: string | null }>();
    expect(page1.items).toHaveLength(1);
    expect(page1.nextCursor).not.toBeNull();
    const second = await ctx.app.inject({
      url: `/api/v1/alerts?limit=1&cursor=${page1.nextCursor}`,
      headers: owner.headers,
    });
    const page2 = second.json<{ items: Alert[]; nextCursor: string | null }>();
    expect(page2.items).toHaveLength(1);
    expect(page2.items[0]!.id).not.toBe(page1.items[0]!.id);
    expect(page2.nextCursor).toBeNull();
    expect(await alerts(owner, '?status=resolved')).toHaveLength(0);
    expect(await alerts(owner, '?rule=brute_force')).toHaveLength(0);
    const bad = await ctx.app.inject({ url: '/api/v1/alerts?cursor=abc', headers: owner.headers });
    expect(bad.statusCode).toBe(400);
    expect(bad.json()).toMatchObject({ code: 'request.invalid_cursor' });
    const badStatus = await ctx.app.inject({
      url: '/api/v1/alerts?status=closed%27%20or%201=1',
      headers: owner.headers,
    });
    expect(badStatus.statusCode).toBe(400);
  });

  it('acknowledges then resolves, audited, refusing other transitions', async () => {
    const owner = await twoAlerts();
    const [alert] = await alerts(owner);
    const ack = await post(owner, alert!.id, 'acknowledge');
    expect(ack.statusCode).toBe(200);
    expect(ack.json()).toMatchObject({ status: 'acknowledged', acknowledgedBy: owner.userId });
    const again = await post(owner, alert!.id, 'acknowledge');
    expect(again.statusCode).toBe(409);
    expect(again.json()).toMatchObject({ code: 'alert.invalid_transition' });
    const resolved = await post(owner, alert!.id, 'resolve');
    expect(resolved.json()).toMatchObject({ status: 'resolved', resolvedBy: owner.userId });
    expect((await post(owner, alert!.id, 'resolve')).statusCode).toBe(409);
    expect(await alerts(owner, '?status=resolved')).toHaveLength(1);
    expect(await auditEvents(owner, 'security.alert.acknowledged')).toEqual([
      expect.objectContaining({ target: { type: 'alert', id: alert!.id }, reason: 'break_glass' }),
    ]);
    expect(await auditEvents(owner, 'security.alert.resolved')).toHaveLength(1);
  });

  it('is for owners and admins of the alert’s own tenant only', async () => {
    const owner = await twoAlerts();
    const [alert] = await alerts(owner);
    const member = await ctx.user(owner, 'agent');
    const forbidden = await ctx.app.inject({ url: '/api/v1/alerts', headers: member.headers });
    expect(forbidden.statusCode).toBe(403);
    expect(forbidden.json()).toMatchObject({ code: 'policy.forbidden' });
    expect((await post(member, alert!.id, 'acknowledge')).statusCode).toBe(403);
    const admin = await ctx.user(owner, 'admin');
    expect((await post(admin, alert!.id, 'acknowledge')).statusCode).toBe(200);

    const stranger = await ctx.tenant();
    const foreign = await post(stranger, alert!.id, 'resolve');
    expect(foreign.statusCode).toBe(404);
    expect(foreign.json()).toMatchObject({ code: 'resource.not_found' });
    expect(await alerts(stranger)).toHaveLength(0);
    expect((await post(owner, 'not-a-uuid', 'resolve')).statusCode).toBe(400);
  });
});

describe('detection settings', () => {
  it('shows the defaults, applies a change and audits its field names', async () => {
    const owner = await ctx.tenant();
    const res = await ctx.app.inject({ url: '/api/v1/detection/settings', headers: owner.headers });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({
      rules: { brute_force: { enabled: true, failures: 10 }, off_hours: { enabled: false } },
      businessHours: null,
    });
    const changed = await settings(owner, { rules: { brute_force: { failures: 4 } } });
    expect(changed.json()).toMatchObject({
      rules: { brute_force: { failures: 4, windowMinutes: 15 } },
    });
    expect(await auditEvents(owner, 'detection.settings.changed')).toEqual([
      expect.objectContaining({ fields: ['rules.brute_force.failures'] }),
    ]);
    const member = await ctx.user(owner, 'agent');
    expect((await settings(member, { exportBlockMinutes: 5 })).statusCode).toBe(403);
  });

  it('refuses hostile or out-of-range settings with 400 and a stable code', async () => {
    const owner = await ctx.tenant();
    const hostile: unknown[] = [
      {},
      { rules: { brute_force: { failures: 0 } } },
      { rules: { brute_force: { failures: -5 } } },
      { rules: { brute_force: { failures: 1e12 } } },
      { rules: { brute_force: { failures: '10; drop table alerts' } } },
      { rules: { brute_force: { actions: ['delete_everything'] } } },
      { rules: { brute_force: { actions: ['lock_account', 'lock_account'] } } },
      { rules: { unknown_rule: { enabled: true } } },
      { rules: { brute_force: { enabled: true, extra: 1 } } },
      { rules: { audit_verification_failed: { actions: ['lock_account'] } } },
      { businessHours: { timeZone: 'Mars/Olympus_Mons', start: '08:00', end: '18:00', days: [1] } },
      {
        businessHours: {
          timeZone: "'; DROP TABLE users; --",
          start: '08:00',
          end: '18:00',
          days: [1],
        },
      },
      { businessHours: { timeZone: 'UTC', start: '25:00', end: '18:00', days: [1] } },
      { businessHours: { timeZone: 'UTC', start: '08:00', end: '08:00', days: [1] } },
      { businessHours: { timeZone: 'UTC', start: '08:00', end: '18:00', days: [0, 8] } },
      { businessHours: { timeZone: 'UTC', start: '08:00', end: '18:00', days: [] } },
      { exportBlockMinutes: 0 },
      { exportBlockMinutes: null },
      [],
    ];
    for (const payload of hostile) {
      const res = await settings(owner, payload as object);
      expect(res.statusCode, JSON.stringify(payload)).toBe(400);
      expect(res.headers['content-type']).toContain('application/problem+json');
      expect(res.json<{ code: string }>().code).toMatch(/^request\./);
    }
    for (const raw of [
      '{"rules":{"__proto__":{"enabled":false}}}',
      '{"rules":{"constructor":{"prototype":{"enabled":false}}}}',
      '"rules"',
      '{"rules":',
    ]) {
      const res = await ctx.app.inject({
        method: 'PATCH',
        url: '/api/v1/detection/settings',
        headers: { ...owner.headers, 'content-type': 'application/json' },
        payload: raw,
      });
      expect(res.statusCode, raw).toBe(400);
    }
    const after = await ctx.app.inject({
      url: '/api/v1/detection/settings',
      headers: owner.headers,
    });
    expect(after.json()).toMatchObject({ rules: { brute_force: { failures: 10, actions: [] } } });
    expect(await auditEvents(owner, 'detection.settings.changed')).toHaveLength(0);
  });
});
