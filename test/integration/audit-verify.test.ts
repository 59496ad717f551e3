import { Buffer } from 'node:buffer';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { sql, type Kysely } from 'kysely';
import { runCli } from '../../src/cli/main.ts';
import * as derivedColumns from '../../src/db/migrations/0021-audit-derived-columns.ts';
import {
  AuditIntegrityError,
  canonicalBytes,
  exportPublicKeyPem,
  generateCheckpointKeyPair,
  keyIdFor,
  leafHash,
  signCheckpoint,
  toHex,
} from '../../src/core/audit/index.ts';
import { readTree } from '../../src/modules/audit/repository.ts';
import { eventBody } from '../../src/modules/audit/event.ts';
import { createAuditService } from '../../src/modules/audit/service.ts';
import { verifyTenantLog } from '../../src/modules/audit/verify.ts';
import { editEventBytes } from '../helpers/audit-rewrite.ts';
import { createTestContext, type TestContext } from '../helpers/context.ts';
import { dialectUnderTest } from '../helpers/database.ts';

let ctx: TestContext;
const savedEnv = { ...process.env };

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

const SIZE = 10;

/**
 * A tenant with SIZE events, verified once (which signs a checkpoint of all of them). Signing in
 * already recorded the owner's sign-in, so the log is topped up to SIZE.
 */
async function tenantWithLog() {
  const owner = await ctx.tenant();
  const already = (await readTree(db(), owner.tenantId)).size;
  expect(already).toBeLessThan(SIZE);
  for (let i = already; i < SIZE; i++) {
    await ctx.services.database.db.transaction().execute((trx) =>
      ctx.services.auditLog.append(trx, {
        tenantId: owner.tenantId,
        type: i % 2 === 0 ? 'record.created' : 'record.updated',
        actor: { kind: 'user', id: owner.userId },
        target: { type: 'contact', id: `c${i}` },
        fields: ['email', 'name'],
      }),
    );
  }
  await ctx.services.auditLog.verify(owner.tenantId);
  return owner;
}

const db = () => ctx.database.handle.db;
const trusted = () => [ctx.services.auditLog.signingKey().publicKey];
const events = (tenantId: string) =>
  db().updateTable('audit_events').where('tenant_id', '=', tenantId);

async function failure(tenantId: string): Promise<AuditIntegrityError> {
  const error = await verifyTenantLog(db(), tenantId, trusted()).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(AuditIntegrityError);
  return error as AuditIntegrityError;
}

const editBytes = (tenantId: string, at: number, from: string, to: string) =>
  editEventBytes(db(), tenantId, at, from, to);

describe('audit log verification', () => {
  it('verifies an untouched log and its checkpoints', async () => {
    const owner = await tenantWithLog();
    const summary = await verifyTenantLog(db(), owner.tenantId, trusted());
    expect(summary.treeSize).toBe(SIZE);
    expect(summary.anchoredTreeSize).toBe(SIZE);
    expect(summary.checkpointsVerified).toBeGreaterThanOrEqual(2); // first event, then verify
  });

  it('names a changed event by its leaf (canonical bytes edited)', async () => {
    const { tenantId } = await tenantWithLog();
    const row = await db()
      .selectFrom('audit_events')
      .select('canonical')
      .where('tenant_id', '=', tenantId)
      .where('leaf_index', '=', 4)
      .executeTakeFirstOrThrow();
    await events(tenantId)
      .set({ canonical: row.canonical.replace('"email"', '"iban"') })
      .where('leaf_index', '=', 4)
      .execute();
    const error = await failure(tenantId);
    expect([error.code, error.leafIndex]).toEqual(['LEAF_HASH_MISMATCH', 4]);
  });

  it('names a removed event', async () => {
    const { tenantId } = await tenantWithLog();
    await db()
      .deleteFrom('audit_events')
      .where('tenant_id', '=', tenantId)
      .where('leaf_index', '=', 3)
      .execute();
    const error = await failure(tenantId);
    expect([error.code, error.leafIndex]).toEqual(['LEAF_INDEX_GAP', 3]);
  });

  it('detects the last event removed', async () => {
    const { tenantId } = await tenantWithLog();
    await db()
      .deleteFrom('audit_events')
      .where('tenant_id', '=', tenantId)
      .where('leaf_index', '=', SIZE - 1)
      .execute();
    const error = await failure(tenantId);
    expect([error.code, error.leafIndex]).toEqual(['LOG_TRUNCATED', SIZE - 1]);
  });

  it('names the first of two events whose leaf indexes were swapped', async () => {
    const { tenantId } = await tenantWithLog();
    await events(tenantId).set({ leaf_index: -1 }).where('leaf_index', '=', 2).execute();
    await events(tenantId).set({ leaf_index: 2 }).where('leaf_index', '=', 7).execute();
    await events(tenantId).set({ leaf_index: 7 }).where('leaf_index', '=', -1).execute();
    const error = await failure(tenantId);
    expect([error.code, error.leafIndex]).toEqual(['LEAF_INDEX_ORDER', 2]);
  });

  it('names a forged event inserted with a valid hash', async () => {
    const { tenantId } = await tenantWithLog();
    const at = { leafIndex: SIZE, id: 'forged', occurredAt: new Date().toISOString() };
    const body = eventBody(
      { tenantId, type: 'record.deleted', actor: { kind: 'system', id: 'x' } },
      at,
    );
    const bytes = canonicalBytes(body);
    await db()
      .insertInto('audit_events')
      .values({
        tenant_id: tenantId,
        leaf_index: SIZE,
        canonical: Buffer.from(bytes).toString('utf8'),
        leaf_hash: toHex(leafHash(bytes)),
      })
      .execute();
    const error = await failure(tenantId);
    expect([error.code, error.leafIndex]).toEqual(['LEAF_INDEX_ORDER', SIZE]);
  });

  it('catches an event rewritten together with its leaf hash through the signed root', async () => {
    const { tenantId } = await tenantWithLog();
    const row = await db()
      .selectFrom('audit_events')
      .select(['canonical'])
      .where('tenant_id', '=', tenantId)
      .where('leaf_index', '=', 5)
      .executeTakeFirstOrThrow();
    const canonical = row.canonical.replace('["email","name"]', '["name"]');
    await events(tenantId)
      .set({ canonical, leaf_hash: toHex(leafHash(new TextEncoder().encode(canonical))) })
      .where('leaf_index', '=', 5)
      .execute();
    const error = await failure(tenantId);
    // Leaves 1..9 are only covered by the checkpoint of 10: the fault lies in [1, 10).
    expect([error.code, error.leafIndex, error.checkpointTreeSize]).toEqual([
      'ROOT_MISMATCH',
      1,
      SIZE,
    ]);
  });

  it('rejects a checkpoint whose signature was altered', async () => {
    const { tenantId } = await tenantWithLog();
    await db()
      .updateTable('audit_checkpoints')
      .set({ signature: '00'.repeat(64) })
      .where('tenant_id', '=', tenantId)
      .where('tree_size', '=', SIZE)
      .execute();
    const error = await failure(tenantId);
    expect(error.code).toBe('CHECKPOINT_SIGNATURE_INVALID');
  });

  it('names a subtree hash that proofs are served from when it was altered or removed', async () => {
    const { tenantId } = await tenantWithLog();
    const nodes = () =>
      db().updateTable('audit_nodes').where('tenant_id', '=', tenantId).where('level', '=', 2);
    await nodes()
      .set({ hash: 'ab'.repeat(32) })
      .where('idx', '=', 1)
      .execute();
    const changed = await failure(tenantId);
    expect([changed.code, changed.leafIndex]).toEqual(['NODE_UNAVAILABLE', 4]);
    await db()
      .deleteFrom('audit_nodes')
      .where('tenant_id', '=', tenantId)
      .where('level', '=', 2)
      .where('idx', '=', 1)
      .execute();
    const removed = await failure(tenantId);
    expect([removed.code, removed.leafIndex]).toEqual(['NODE_UNAVAILABLE', 4]);
  });

  it('refuses a checkpoint signed by a key someone registered in the database', async () => {
    const { tenantId } = await tenantWithLog();
    const { privateKey, publicKey } = generateCheckpointKeyPair();
    const forgedKey = { keyId: keyIdFor(publicKey), publicKeyPem: exportPublicKeyPem(publicKey) };
    await db()
      .insertInto('audit_signing_keys')
      .values({ key_id: forgedKey.keyId, public_key: forgedKey.publicKeyPem, created_at: 'x' })
      .execute();
    const tree = await readTree(db(), tenantId);
    const forged = signCheckpoint({ tenantId, treeSize: SIZE, root: tree.root() }, privateKey, {
      now: () => new Date(),
    });
    await db()
      .insertInto('audit_checkpoints')
      .values({
        tenant_id: tenantId,
        tree_size: SIZE,
        root_hash: forged.rootHash,
        signed_at: forged.timestamp,
        key_id: forged.keyId,
        signature: forged.signature,
      })
      .execute();
    const error = await failure(tenantId);
    expect([error.code, error.checkpointTreeSize]).toEqual(['CHECKPOINT_KEY_UNKNOWN', SIZE]);
  });
});

describe('custos audit verify', () => {
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

  it('passes on an intact log and exits non-zero naming the first bad leaf', async () => {
    const owner = await tenantWithLog();
    const ok = await cli(['audit', 'verify', '--tenant', owner.tenant]);
    expect(ok.status).toBe(0);
    expect(ok.out).toContain(`${owner.tenant}: ${SIZE} events verified`);

    await editBytes(owner.tenantId, 8, '"outcome":"success"', '"outcome":"failure"');
    const bad = await cli(['audit', 'verify', '--tenant', owner.tenant]);
    expect(bad.status).toBe(2);
    expect(bad.out).toContain('FAILED at leaf 8: LEAF_HASH_MISMATCH');
    expect(bad.err).toContain(`${owner.tenant} at leaf 8 (LEAF_HASH_MISMATCH)`);
    // The failure is a security alert of the tenant, raised once however often verify runs.
    const alerts = () =>
      ctx.database.handle.db
        .selectFrom('alerts')
        .select(['rule', 'severity', 'count'])
        .where('tenant_id', '=', owner.tenantId)
        .execute();
    expect(await alerts()).toEqual([
      { rule: 'audit_verification_failed', severity: 'critical', count: 1 },
    ]);
    expect((await cli(['audit', 'verify', '--tenant', owner.tenant])).status).toBe(2);
    expect(await alerts()).toEqual([
      { rule: 'audit_verification_failed', severity: 'critical', count: 1 },
    ]);
  });

  it('refuses an unknown tenant', async () => {
    const res = await cli(['audit', 'verify', '--tenant', 'no-such-tenant']);
    expect(res.status).toBe(1);
  });
});

describe('event columns generated from the canonical bytes', () => {
  const COLUMNS = derivedColumns.AUDIT_DERIVED_COLUMNS.map(([name]) => name);
  const row = (tenantId: string, at: number) =>
    db()
      .selectFrom('audit_events')
      .select(COLUMNS)
      .where('tenant_id', '=', tenantId)
      .where('leaf_index', '=', at)
      .executeTakeFirstOrThrow();

  it('refuses an edit of any column apart from the bytes, and the log still verifies', async () => {
    const { tenantId } = await tenantWithLog();
    const at = 6;
    const original = await row(tenantId, at);
    const edits: Record<string, unknown>[] = [
      { id: 'forged-id' },
      { type: 'record.deleted' },
      { occurred_at: '2020-01-01T00:00:00.000Z' },
      { actor_kind: 'system' },
      { actor_id: null },
      { ip: '198.51.100.1' },
      { user_agent: 'curl/8' },
      { request_id: 'forged-request' },
      { target_type: 'deal' },
      { target_id: 'c999' },
      { target_type: null, target_id: null },
      { outcome: 'failure' },
      { reason: 'forged' },
      { fields: '["email"]' },
      { break_glass_id: 'forged-grant' },
    ];
    for (const edit of edits) {
      await expect(
        events(tenantId)
          .set(edit as never)
          .where('leaf_index', '=', at)
          .execute(),
        Object.keys(edit).join(),
      ).rejects.toThrow(/generated column|can only be updated to DEFAULT/);
    }
    expect(await row(tenantId, at)).toEqual(original);
    expect((await verifyTenantLog(db(), tenantId, trusted())).treeSize).toBe(SIZE);
  });

  it('reads every column out of the bytes, so an edit of the bytes shows in them and is named', async () => {
    const { tenantId } = await tenantWithLog();
    const userAgent = 'Agent "quoted" \\ back\nslash\u0001 é 中文 😀';
    await db()
      .transaction()
      .execute((trx) =>
        ctx.services.auditLog.append(trx, {
          tenantId,
          type: 'auth.login_succeeded',
          actor: { kind: 'anonymous', id: null },
          request: { ip: '2001:db8::1', userAgent, requestId: 'req "1"' },
          reason: 'ok',
        }),
      );
    expect((await verifyTenantLog(db(), tenantId, trusted())).treeSize).toBe(SIZE + 1);
    expect(await row(tenantId, SIZE)).toMatchObject({
      type: 'auth.login_succeeded',
      actor_kind: 'anonymous',
      actor_id: null,
      ip: '2001:db8::1',
      user_agent: userAgent,
      request_id: 'req "1"',
      target_type: null,
      target_id: null,
      outcome: 'success',
      reason: 'ok',
      fields: '[]',
      break_glass_id: null,
    });
    await editBytes(tenantId, SIZE, '😀', '😁');
    expect((await row(tenantId, SIZE)).user_agent).toBe(userAgent.replace('😀', '😁'));
    const error = await failure(tenantId);
    expect([error.code, error.leafIndex]).toEqual(['LEAF_HASH_MISMATCH', SIZE]);
  });

  it('names a table whose columns were made writable, and passes once they are generated again', async () => {
    const { tenantId } = await tenantWithLog();
    // The columns as plain ones (what migrating down does), then edited at will.
    await derivedColumns.down(db() as Kysely<unknown>);
    try {
      await events(tenantId)
        .set({ outcome: 'failure' } as never)
        .where('leaf_index', '=', 3)
        .execute();
      const error = await failure(tenantId);
      expect([error.code, error.leafIndex]).toEqual(['COLUMNS_DETACHED', 0]);
    } finally {
      await derivedColumns.up(db() as Kysely<unknown>);
    }
    expect((await row(tenantId, 3)).outcome).toBe('success');
    expect((await verifyTenantLog(db(), tenantId, trusted())).treeSize).toBe(SIZE);
  });

  it.skipIf(dialectUnderTest !== 'postgres')(
    'names a column generated from another member of the bytes (PostgreSQL)',
    async () => {
      const { tenantId } = await tenantWithLog();
      const swap = (path: string) =>
        sql`alter table audit_events drop column ip, add column ip text generated always as (${sql.raw(path)}) stored`.execute(
          db(),
        );
      await swap(`canonical::json ->> 'userAgent'`);
      try {
        const error = await failure(tenantId);
        expect([error.code, error.message]).toEqual([
          'COLUMNS_DETACHED',
          'audit_events.ip is no longer generated from the canonical bytes',
        ]);
      } finally {
        await swap(`canonical::json ->> 'ip'`);
        // Dropping the column dropped its index.
        await sql`create index if not exists audit_events_ip_time on audit_events (tenant_id, ip, occurred_at)`.execute(
          db(),
        );
      }
      expect((await verifyTenantLog(db(), tenantId, trusted())).treeSize).toBe(SIZE);
    },
  );
});

describe('checkpoint policy', () => {
  it('signs a checkpoint every N events and after T seconds of events', async () => {
    const owner = await ctx.tenant();
    const clock = { at: Date.parse('2026-01-15T09:00:00.000Z'), now: () => new Date(clock.at) };
    const service = createAuditService({
      db: db(),
      dialect: ctx.database.handle.dialect,
      clock,
      dataDir: ctx.database.dataDir,
      checkpointEvery: 3,
      checkpointIntervalMs: 60_000,
    });
    const append = () =>
      db()
        .transaction()
        .execute((trx) =>
          service.append(trx, {
            tenantId: owner.tenantId,
            type: 'test.tick',
            actor: { kind: 'system', id: 'test' },
          }),
        );
    // The owner's sign-in is already leaf 0 (checkpoint 1): top the log up to 7 events.
    const already = (await readTree(db(), owner.tenantId)).size;
    for (let i = already; i < 7; i++) await append();
    clock.at += 59_000;
    await append(); // 8: neither 3 events nor 60 s since the checkpoint at 7
    clock.at += 1_000;
    await append(); // 9: 60 s passed
    const sizes = await db()
      .selectFrom('audit_checkpoints')
      .select('tree_size')
      .where('tenant_id', '=', owner.tenantId)
      .orderBy('tree_size')
      .execute();
    expect(sizes.map((r) => Number(r.tree_size))).toEqual([1, 4, 7, 9]);
    const latest = await service.checkpoint(owner.tenantId);
    expect(latest.treeSize).toBe(9); // on demand: nothing new to sign
    expect((await verifyTenantLog(db(), owner.tenantId, trusted())).checkpointsVerified).toBe(4);
  });
});
