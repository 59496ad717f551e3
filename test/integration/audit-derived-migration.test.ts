import { Migrator, sql, type Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  canonicalBytes,
  CompactTree,
  hashFromHex,
  leafHashHexOfText,
  nodeHash,
  toHex,
} from '../../src/core/audit/index.ts';
import { migrations } from '../../src/db/migrations/index.ts';
import { createAuditService } from '../../src/modules/audit/service.ts';
import { verifyTenantLog } from '../../src/modules/audit/verify.ts';
import { runAsSystem } from '../../src/db/tenant-scope.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';

// Migration 0021: events written before it (every column written by the append) keep their
// bytes, hashes and what their columns say; the columns are generated from the bytes after it.
describe('migration 0021 (audit event columns generated from the canonical bytes)', () => {
  let database: TestDatabase;
  let migrator: Migrator;
  const db = () => database.handle.db as unknown as Kysely<Record<string, Record<string, unknown>>>;

  // Two events as the append path wrote them before 0021: columns and canonical text agree.
  const events = [
    {
      actor: { id: 'u1', kind: 'user' },
      fields: ['email', 'phone'],
      id: 'e0',
      ip: '203.0.113.7',
      leafIndex: 0,
      occurredAt: '2026-01-02T03:04:05.678Z',
      outcome: 'success',
      reason: null,
      requestId: 'r "0"',
      target: { id: 'c1', type: 'contact' },
      tenantId: 't1',
      type: 'record.updated',
      userAgent: 'Agent \\ é 中文 😀',
      v: 1,
    },
    {
      actor: { id: null, kind: 'anonymous' },
      breakGlassId: 'g1',
      fields: [],
      id: 'e1',
      ip: null,
      leafIndex: 1,
      occurredAt: '2026-01-02T03:04:06.000Z',
      outcome: 'failure',
      reason: 'bad_password',
      requestId: null,
      target: null,
      tenantId: 't1',
      type: 'auth.login_failed',
      userAgent: null,
      v: 1,
    },
  ];
  const columnsOf = (e: (typeof events)[number]) => ({
    id: e.id,
    type: e.type,
    occurred_at: e.occurredAt,
    actor_kind: e.actor.kind,
    actor_id: e.actor.id,
    ip: e.ip,
    user_agent: e.userAgent,
    request_id: e.requestId,
    target_type: e.target?.type ?? null,
    target_id: e.target?.id ?? null,
    outcome: e.outcome,
    reason: e.reason,
    fields: JSON.stringify(e.fields),
    break_glass_id: e.breakGlassId ?? null,
  });
  // The canonical text of each event, as the append wrote it.
  const canonical = (e: (typeof events)[number]) => new TextDecoder().decode(canonicalBytes(e));
  const read = () =>
    db()
      .selectFrom('audit_events')
      .select(['leaf_index', 'canonical', 'leaf_hash', ...Object.keys(columnsOf(events[0]!))])
      .orderBy('leaf_index')
      .execute();

  beforeAll(async () => {
    database = await createTestDatabase({ migrate: false });
    migrator = new Migrator({
      db: database.handle.db,
      provider: { getMigrations: () => Promise.resolve(migrations) },
    });
    expect((await migrator.migrateTo('0020-phone-region')).error).toBeUndefined();
    await db()
      .insertInto('tenants')
      .values({ id: 't1', slug: 't1', name: 't1', created_at: '2026-01-01T00:00:00.000Z' })
      .execute();
    for (const e of events) {
      const text = canonical(e);
      await db()
        .insertInto('audit_events')
        .values({
          tenant_id: 't1',
          leaf_index: e.leafIndex,
          canonical: text,
          leaf_hash: leafHashHexOfText(text),
          ...columnsOf(e),
        })
        .execute();
    }
  });
  afterAll(async () => database?.drop());

  it('keeps every event, its bytes, its hash and what its columns say', async () => {
    const before = await read();
    expect((await migrator.migrateToLatest()).error).toBeUndefined();
    const after = await read();
    expect(after.map((r) => ({ ...r, leaf_index: Number(r.leaf_index) }))).toEqual(
      before.map((r) => ({ ...r, leaf_index: Number(r.leaf_index) })),
    );
    expect(after.map((r) => r.user_agent)).toEqual([events[0]!.userAgent, null]);
  });

  it('refuses to write a column, and a new event gets its columns from its bytes', async () => {
    const edit = db().updateTable('audit_events').set({ outcome: 'success' }).execute();
    await expect(edit).rejects.toThrow(/generated column|can only be updated to DEFAULT/);
    // The tree head and the subtree hash of leaves 0 and 1, as the append path kept them.
    const leaves = (await read()).map((r) => hashFromHex(String(r.leaf_hash)));
    const head = new CompactTree();
    for (const leaf of leaves) head.append(leaf);
    await db()
      .insertInto('audit_nodes')
      .values({ tenant_id: 't1', level: 1, idx: 0, hash: toHex(nodeHash(leaves[0]!, leaves[1]!)) })
      .execute();
    await db()
      .insertInto('audit_tree')
      .values({
        tenant_id: 't1',
        tree_size: head.size,
        frontier: JSON.stringify(head.toState()),
        checkpoint_size: 0,
        checkpoint_at: null,
      })
      .execute();
    const audit = createAuditService({
      db: database.handle.db,
      dialect: database.handle.dialect,
      clock: { now: () => new Date('2026-01-03T00:00:00.000Z') },
      dataDir: database.dataDir,
      writer: database.handle.writer,
    });
    await database.handle.db.transaction().execute((trx) =>
      audit.append(trx, {
        tenantId: 't1',
        type: 'record.created',
        actor: { kind: 'system', id: 'job' },
        target: { type: 'deal', id: 'd1' },
        fields: ['name'],
      }),
    );
    const last = (await read()).at(-1)!;
    expect(last).toMatchObject({
      type: 'record.created',
      actor_kind: 'system',
      actor_id: 'job',
      target_type: 'deal',
      target_id: 'd1',
      fields: '["name"]',
      outcome: 'success',
    });
    const summary = await runAsSystem('cli', () =>
      verifyTenantLog(database.handle.db, 't1', [audit.signingKey().publicKey]),
    );
    expect(summary.treeSize).toBe(3);
  });

  it('goes back to plain columns holding the same values, and forward again', async () => {
    const before = await read();
    const m0021 = migrations['0021-audit-derived-columns']!;
    await m0021.down!(database.handle.db);
    expect(await read()).toEqual(before);
    // Plain again: a column can be written (which `audit verify` reports as COLUMNS_DETACHED).
    await db()
      .updateTable('audit_events')
      .set({ reason: 'x' })
      .where('leaf_index', '=', 0)
      .execute();
    await m0021.up(database.handle.db);
    expect(await read()).toEqual(before);
    const count = await sql<{ n: number | string }>`select count(*) as n from audit_events`.execute(
      database.handle.db,
    );
    expect(Number(count.rows[0]!.n)).toBe(3);
  });
});
