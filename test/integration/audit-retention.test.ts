import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { runCli } from '../../src/cli/main.ts';
import {
  AuditIntegrityError,
  hashFromHex,
  verifyConsistency,
  verifyInclusion,
} from '../../src/core/audit/index.ts';
import { AppError } from '../../src/errors.ts';
import { prunedSize, readTree } from '../../src/modules/audit/repository.ts';
import { verifyTenantLog } from '../../src/modules/audit/verify.ts';
import { editEventBytes } from '../helpers/audit-rewrite.ts';
import { createTestContext, type Session, type TestContext } from '../helpers/context.ts';

let ctx: TestContext;
const savedEnv = { ...process.env };
const DAY = 86_400_000;

beforeAll(async () => {
  ctx = await createTestContext();
});
afterAll(async () => ctx?.close());
afterEach(() => {
  for (const name of Object.keys(process.env)) {
    if (name.startsWith('CUSTOS_') && !(name in savedEnv)) delete process.env[name];
  }
  Object.assign(process.env, savedEnv);
  vi.restoreAllMocks();
});

const db = () => ctx.database.handle.db;
const trusted = () => [ctx.services.auditLog.signingKey().publicKey];

async function appendEvents(tenantId: string, n: number, type = 'record.updated') {
  for (let i = 0; i < n; i++) {
    await db()
      .transaction()
      .execute((trx) =>
        ctx.services.auditLog.append(trx, {
          tenantId,
          type,
          actor: { kind: 'system', id: 'test' },
          target: { type: 'contact', id: `c${i}` },
          fields: ['email'],
        }),
      );
  }
}

const leafIndexes = async (tenantId: string) =>
  (
    await db()
      .selectFrom('audit_events')
      .select('leaf_index')
      .where('tenant_id', '=', tenantId)
      .orderBy('leaf_index')
      .execute()
  ).map((r) => Number(r.leaf_index));

const editBytes = (tenantId: string, at: number, from: string, to: string) =>
  editEventBytes(db(), tenantId, at, from, to);

async function failure(tenantId: string): Promise<AuditIntegrityError> {
  const error = await verifyTenantLog(db(), tenantId, trusted()).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(AuditIntegrityError);
  return error as AuditIntegrityError;
}

/** A tenant with `old` events (older than retention after the clock moves) then `young` ones. */
async function agedTenant(old: number, young: number, days = 2192) {
  const owner = await ctx.tenant();
  await appendEvents(owner.tenantId, old);
  const oldSize = (await readTree(db(), owner.tenantId)).size;
  ctx.clock.advance((days + 1) * DAY);
  await appendEvents(owner.tenantId, young);
  const session = await ctx.login(owner.tenant, owner.email); // the old session has expired
  return { owner: session, oldSize };
}

async function api(
  session: Session,
  method: 'GET' | 'PATCH' | 'POST',
  url: string,
  payload?: object,
) {
  return ctx.app.inject({
    method,
    url,
    headers: session.headers,
    ...(payload ? { payload } : {}),
  });
}

describe('retention', () => {
  it('keeps 6 years by default and prunes only what is older, leaving verification working', async () => {
    const owner = await ctx.tenant();
    await appendEvents(owner.tenantId, 5);
    ctx.clock.advance(2191 * DAY);
    const early = await ctx.services.auditRetention.pruneTenant(owner.tenantId);
    expect(early.outcome).toBe('nothing_due');

    ctx.clock.advance(2 * DAY);
    const oldSize = (await readTree(db(), owner.tenantId)).size;
    await appendEvents(owner.tenantId, 4);
    const result = await ctx.services.auditRetention.pruneTenant(owner.tenantId);
    expect(result).toMatchObject({ outcome: 'pruned', prunedSize: oldSize, removed: oldSize });
    expect(await prunedSize(db(), owner.tenantId)).toBe(oldSize);

    const kept = await leafIndexes(owner.tenantId);
    expect(kept[0]).toBe(oldSize);
    const prune = await db()
      .selectFrom('audit_events')
      .select(['type', 'target_type', 'target_id', 'actor_id', 'reason'])
      .where('tenant_id', '=', owner.tenantId)
      .where('type', '=', 'audit.pruned')
      .executeTakeFirstOrThrow();
    expect(prune).toEqual({
      type: 'audit.pruned',
      target_type: 'audit_log',
      target_id: String(oldSize),
      actor_id: 'audit-prune',
      reason: 'retention',
    });

    const summary = await verifyTenantLog(db(), owner.tenantId, trusted());
    expect(summary.startIndex).toBe(oldSize);
    expect(summary.treeSize).toBe(oldSize + 5);
    // Checkpoints before the prune point keep their signatures; the one at it matched.
    expect(summary.checkpointsBeforeStart).toBeGreaterThan(0);

    // Nothing more is due: a second run removes nothing.
    expect((await ctx.services.auditRetention.pruneTenant(owner.tenantId)).outcome).toBe(
      'nothing_due',
    );
  });

  it('still serves proofs that verify across the pruned range', async () => {
    const { owner, oldSize } = await agedTenant(6, 5);
    await ctx.services.auditRetention.pruneTenant(owner.tenantId);
    const head = (await api(owner, 'GET', '/api/v1/audit/checkpoints/latest')).json<{
      treeSize: number;
      rootHash: string;
    }>();
    const root = hashFromHex(head.rootHash);
    // A retained leaf whose proof needs hashes of pruned leaves.
    const inc = await api(
      owner,
      'GET',
      `/api/v1/audit/proofs/inclusion?leafIndex=${oldSize}&treeSize=${head.treeSize}`,
    );
    expect(inc.statusCode).toBe(200);
    const p = inc.json<{ leafHash: string; proof: string[] }>();
    expect(
      verifyInclusion(
        oldSize,
        head.treeSize,
        hashFromHex(p.leafHash),
        p.proof.map(hashFromHex),
        root,
      ),
    ).toBe(true);
    // A pruned leaf: its event is gone, its inclusion can still be proven.
    const gone = await api(
      owner,
      'GET',
      `/api/v1/audit/proofs/inclusion?leafIndex=1&treeSize=${head.treeSize}`,
    );
    expect(gone.statusCode).toBe(200);
    // Consistency from a size inside the pruned range, against its signed checkpoint.
    const old = await db()
      .selectFrom('audit_checkpoints')
      .select(['tree_size', 'root_hash'])
      .where('tenant_id', '=', owner.tenantId)
      .where('tree_size', '<', oldSize)
      .orderBy('tree_size', 'desc')
      .executeTakeFirstOrThrow();
    const from = Number(old.tree_size);
    const cons = await api(
      owner,
      'GET',
      `/api/v1/audit/proofs/consistency?from=${from}&to=${head.treeSize}`,
    );
    expect(cons.statusCode).toBe(200);
    expect(
      verifyConsistency(
        from,
        head.treeSize,
        hashFromHex(old.root_hash),
        root,
        cons.json<{ proof: string[] }>().proof.map(hashFromHex),
      ),
    ).toBe(true);
  });

  it('still names a changed retained event, and a changed kept hash of a pruned leaf', async () => {
    const { owner, oldSize } = await agedTenant(5, 5);
    await ctx.services.auditRetention.pruneTenant(owner.tenantId);
    const [success, failed] = ['"outcome":"success"', '"outcome":"failure"'];
    await editBytes(owner.tenantId, oldSize + 2, success, failed);
    const error = await failure(owner.tenantId);
    expect([error.code, error.leafIndex]).toEqual(['LEAF_HASH_MISMATCH', oldSize + 2]);
    await editBytes(owner.tenantId, oldSize + 2, failed, success);
    await verifyTenantLog(db(), owner.tenantId, trusted());

    await db()
      .updateTable('audit_nodes')
      .set({ hash: 'ab'.repeat(32) })
      .where('tenant_id', '=', owner.tenantId)
      .where('level', '=', 0)
      .where('idx', '=', 2)
      .execute();
    expect(['ROOT_MISMATCH', 'NODE_UNAVAILABLE']).toContain((await failure(owner.tenantId)).code);
  });

  it('detects events removed under the cover of retention (no recorded prune)', async () => {
    const owner = await ctx.tenant();
    await appendEvents(owner.tenantId, 8);
    await ctx.services.auditLog.checkpoint(owner.tenantId);
    // What a pruning would leave, done by hand: hashes kept, events gone, pruned_size moved.
    const rows = await db()
      .selectFrom('audit_events')
      .select(['leaf_index', 'leaf_hash'])
      .where('tenant_id', '=', owner.tenantId)
      .where('leaf_index', '<', 4)
      .execute();
    await db()
      .insertInto('audit_nodes')
      .values(
        rows.map((r) => ({
          tenant_id: owner.tenantId,
          level: 0,
          idx: Number(r.leaf_index),
          hash: r.leaf_hash,
        })),
      )
      .execute();
    await db()
      .deleteFrom('audit_events')
      .where('tenant_id', '=', owner.tenantId)
      .where('leaf_index', '<', 4)
      .execute();
    await db()
      .updateTable('audit_tree')
      .set({ pruned_size: 4 })
      .where('tenant_id', '=', owner.tenantId)
      .execute();
    expect((await failure(owner.tenantId)).code).toBe('PRUNE_UNANCHORED');
  });

  it('refuses to prune a log that fails verification', async () => {
    const { owner } = await agedTenant(4, 2);
    await editBytes(owner.tenantId, 1, '"reason":null', '"reason":"edited"');
    const before = await leafIndexes(owner.tenantId);
    const error = await ctx.services.auditRetention.pruneTenant(owner.tenantId).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(AppError);
    expect((error as AppError).code).toBe('audit.prune_refused');
    expect(await leafIndexes(owner.tenantId)).toEqual(before);
  });

  it('uses the tenant retention and leaves other tenants alone', async () => {
    const owner = await ctx.tenant();
    const other = await ctx.tenant();
    const res = await api(owner, 'PATCH', '/api/v1/audit/settings', { retentionDays: 30 });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ retentionDays: 30, effectiveRetentionDays: 30 });
    const changed = await db()
      .selectFrom('audit_events')
      .select(['fields', 'actor_id'])
      .where('tenant_id', '=', owner.tenantId)
      .where('type', '=', 'settings.audit_changed')
      .executeTakeFirstOrThrow();
    expect(changed).toEqual({ fields: '["retentionDays"]', actor_id: owner.userId });

    ctx.clock.advance(31 * DAY);
    await appendEvents(owner.tenantId, 1);
    await appendEvents(other.tenantId, 1);
    const mine = await ctx.services.auditRetention.pruneTenant(owner.tenantId);
    expect(mine.outcome).toBe('pruned');
    const theirs = await ctx.services.auditRetention.pruneTenant(other.tenantId);
    expect(theirs.outcome).toBe('nothing_due');
    await verifyTenantLog(db(), owner.tenantId, trusted());
  });

  it('prunes nothing under legal hold; placing and releasing it are audited with their reference', async () => {
    const { owner, oldSize } = await agedTenant(3, 2);
    const hold = await api(owner, 'POST', '/api/v1/audit/legal-hold', { reason: 'Case 2026-117' });
    expect(hold.statusCode).toBe(200);
    expect(hold.json()).toMatchObject({ legalHold: { enabled: true, reason: 'Case 2026-117' } });
    const again = await api(owner, 'POST', '/api/v1/audit/legal-hold', { reason: 'Case 2' });
    expect([again.statusCode, again.json<{ code: string }>().code]).toEqual([
      409,
      'audit.legal_hold_active',
    ]);

    const held = await ctx.services.auditRetention.pruneTenant(owner.tenantId);
    expect(held.outcome).toBe('held');
    expect((await leafIndexes(owner.tenantId))[0]).toBe(0);

    const release = await api(owner, 'POST', '/api/v1/audit/legal-hold/release', {
      reason: 'Case 2026-117 closed',
    });
    expect(release.statusCode).toBe(200);
    expect(release.json()).toMatchObject({ legalHold: { enabled: false, reason: null } });
    const events = await db()
      .selectFrom('audit_events')
      .select(['type', 'reason'])
      .where('tenant_id', '=', owner.tenantId)
      .where('type', 'like', 'audit.legal_hold%')
      .orderBy('leaf_index')
      .execute();
    expect(events).toEqual([
      { type: 'audit.legal_hold_placed', reason: 'Case 2026-117' },
      { type: 'audit.legal_hold_released', reason: 'Case 2026-117 closed' },
    ]);
    const pruned = await ctx.services.auditRetention.pruneTenant(owner.tenantId);
    expect(pruned).toMatchObject({ outcome: 'pruned', prunedSize: oldSize });
  });

  it('validates settings and keeps them to owners and admins', async () => {
    const owner = await ctx.tenant();
    for (const payload of [
      { retentionDays: 29 },
      { retentionDays: 36501 },
      { retentionDays: 'six years' },
      { authentication: false },
      {},
    ]) {
      const res = await api(owner, 'PATCH', '/api/v1/audit/settings', payload);
      expect([res.statusCode, res.json<{ code: string }>().code]).toEqual([400, 'request.invalid']);
    }
    for (const reason of ['', 'x'.repeat(101), 'Jane <jane@example.com>', 'line\nbreak']) {
      const res = await api(owner, 'POST', '/api/v1/audit/legal-hold', { reason });
      expect([res.statusCode, res.json<{ code: string }>().code]).toEqual([400, 'request.invalid']);
    }
    const release = await api(owner, 'POST', '/api/v1/audit/legal-hold/release', { reason: 'x' });
    expect(release.json<{ code: string }>().code).toBe('audit.legal_hold_inactive');
    const member = await ctx.user(owner, 'agent');
    for (const [method, url, payload] of [
      ['GET', '/api/v1/audit/settings', undefined],
      ['PATCH', '/api/v1/audit/settings', { retentionDays: 30 }],
      ['POST', '/api/v1/audit/legal-hold', { reason: 'Case 1' }],
    ] as const) {
      const res = await api(member, method, url, payload);
      expect([res.statusCode, res.json<{ code: string }>().code]).toEqual([
        403,
        'policy.forbidden',
      ]);
    }
    const view = (await api(owner, 'GET', '/api/v1/audit/settings')).json<{
      retentionDays: number | null;
      effectiveRetentionDays: number;
      mandatory: string[];
    }>();
    expect(view.retentionDays).toBeNull();
    expect(view.effectiveRetentionDays).toBe(2192);
    expect(view.mandatory).toContain('authentication');
  });
});

describe('custos audit prune / retention', () => {
  async function cli(args: string[]) {
    process.env.CUSTOS_DATA_DIR = ctx.database.dataDir;
    if (ctx.database.url) process.env.CUSTOS_DATABASE_URL = ctx.database.url;
    const out: string[] = [];
    const err: string[] = [];
    vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
      err.push(String(chunk));
      return true;
    });
    const status = await runCli(args, (line) => out.push(line));
    vi.restoreAllMocks();
    return { status, out: out.join('\n'), err: err.join('') };
  }

  it('sets retention and hold, and prunes by hand (the CLI runs on the real clock)', async () => {
    // The CLI's clock is the system clock: age the tenant's events by writing them in the past.
    ctx.clock.set(new Date(Date.now() - 40 * DAY));
    const owner = await ctx.tenant();
    await appendEvents(owner.tenantId, 3);
    ctx.clock.set(new Date());

    const set = await cli(['audit', 'retention', '--tenant', owner.tenant, '--days', '30']);
    expect(set.status).toBe(0);
    expect(set.out).toContain(`${owner.tenant}: retention 30 days; legal hold off`);
    const hold = await cli(['audit', 'retention', '--tenant', owner.tenant, '--hold', 'Case 9']);
    expect(hold.out).toContain('legal hold ON since');
    const held = await cli(['audit', 'prune', '--tenant', owner.tenant]);
    expect(held.out).toContain('on legal hold, nothing pruned');
    await cli(['audit', 'retention', '--tenant', owner.tenant, '--release', 'Case 9']);
    const pruned = await cli(['audit', 'prune', '--tenant', owner.tenant]);
    expect(pruned.status).toBe(0);
    expect(pruned.out).toMatch(/: \d+ events pruned/);
    expect((await cli(['audit', 'verify', '--tenant', owner.tenant])).status).toBe(0);

    const bad = await cli(['audit', 'retention', '--tenant', owner.tenant, '--days', '7']);
    expect(bad.status).toBe(1);
    expect(bad.err).toContain('request.invalid');
  });
});
