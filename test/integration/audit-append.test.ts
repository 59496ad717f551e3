import { sql, type Transaction } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../src/db/schema.ts';
import {
  CompactTree,
  hashFromHex,
  MemoryMerkleStore,
  toHex,
  type FrontierState,
} from '../../src/core/audit/index.ts';
import type { AuditEventInput } from '../../src/modules/audit/event.ts';
import { openDatabase } from '../../src/db/database.ts';
import { createAuditService } from '../../src/modules/audit/service.ts';
import { verifyTenantLog } from '../../src/modules/audit/verify.ts';
import { createTestContext, type Session, type TestContext } from '../helpers/context.ts';
import { dialectUnderTest } from '../helpers/database.ts';

// A checkpoint every 8 events, so that appends sign heads on the way.
let ctx: TestContext;
beforeAll(async () => {
  ctx = await createTestContext({ CUSTOS_AUDIT_CHECKPOINT_EVERY: '8' });
});
afterAll(async () => ctx?.close());

const db = () => ctx.database.handle.db;
const log = () => ctx.services.auditLog;

const event = (tenantId: string, i: number, type = 'record.read'): AuditEventInput => ({
  tenantId,
  type,
  actor: { kind: 'system', id: null },
  request: { requestId: `r-${i}`, ip: '203.0.113.7', userAgent: 'test' },
  target: { type: 'contact', id: `c-${i}` },
  fields: ['nationalId'],
});

async function leaves(tenantId: string) {
  const rows = await db()
    .selectFrom('audit_events')
    .select(['leaf_index', 'leaf_hash', 'target_id'])
    .where('tenant_id', '=', tenantId)
    .orderBy('leaf_index')
    .execute();
  return rows.map((r) => ({ ...r, leaf_index: Number(r.leaf_index) }));
}

class Rollback extends Error {}

/** Runs `fn` in a transaction that is then rolled back. */
async function rolledBack(fn: (trx: Transaction<Database>) => Promise<unknown>) {
  await expect(
    db()
      .transaction()
      .execute(async (trx) => {
        await fn(trx);
        throw new Rollback();
      }),
  ).rejects.toBeInstanceOf(Rollback);
}

/** Rejects every insert into audit_events until `restore` (a real failure of the database). */
async function breakAuditTable(): Promise<() => Promise<void>> {
  if (dialectUnderTest === 'sqlite') {
    await sql`create trigger audit_down before insert on audit_events begin select raise(abort, 'audit down'); end`.execute(
      db(),
    );
    return async () => {
      await sql`drop trigger audit_down`.execute(db());
    };
  }
  await sql`create function audit_down() returns trigger language plpgsql as $$ begin raise exception 'audit down'; end $$`.execute(
    db(),
  );
  await sql`create trigger audit_down before insert on audit_events for each row execute function audit_down()`.execute(
    db(),
  );
  return async () => {
    await sql`drop trigger audit_down on audit_events`.execute(db());
    await sql`drop function audit_down()`.execute(db());
  };
}

describe('audit append', () => {
  let owner: Session;
  beforeAll(async () => {
    owner = await ctx.tenant();
  });

  it('keeps one valid tree through appends in transactions, alone, and rolled back', async () => {
    const tenantId = owner.tenantId;
    const start = (await leaves(tenantId)).length;
    let kept = 0;
    for (let i = 0; i < 30; i++) {
      if (i % 3 === 0) {
        await db()
          .transaction()
          .execute((trx) => log().append(trx, event(tenantId, i)));
        kept++;
      } else if (i % 3 === 1) {
        await log().appendAlone([event(tenantId, i), event(tenantId, 1000 + i)]);
        kept += 2;
      } else {
        // Appended, then undone with the change it recorded: the next event takes its place.
        await rolledBack((trx) => log().append(trx, event(tenantId, -i)));
      }
    }
    const rows = await leaves(tenantId);
    const n = start + kept;
    expect(rows.map((r) => r.leaf_index)).toEqual([...Array(n).keys()]);
    expect(rows.some((r) => r.target_id !== null && r.target_id.startsWith('c--'))).toBe(false);

    const summary = await verifyTenantLog(db(), tenantId, [log().signingKey().publicKey]);
    expect(summary.treeSize).toBe(n);
    expect(summary.checkpointsVerified).toBeGreaterThanOrEqual(Math.floor(n / 8));

    // Every stored subtree hash is the one recomputed from the leaves, and none is missing.
    const store = new MemoryMerkleStore();
    for (const r of rows) store.append(hashFromHex(r.leaf_hash));
    const nodes = await db()
      .selectFrom('audit_nodes')
      .select(['level', 'idx', 'hash'])
      .where('tenant_id', '=', tenantId)
      .execute();
    expect(nodes.length).toBe(n - n.toString(2).replaceAll('0', '').length);
    const tree = await db()
      .selectFrom('audit_tree')
      .select(['tree_size', 'frontier'])
      .where('tenant_id', '=', tenantId)
      .executeTakeFirstOrThrow();
    expect(Number(tree.tree_size)).toBe(n);
    // The stored frontier (what the next append builds on) has the root of the stored leaves.
    const frontier = CompactTree.fromState(JSON.parse(tree.frontier) as FrontierState);
    expect(toHex(frontier.root())).toBe(toHex(store.root()));
    expect(toHex(summary.root)).toBe(toHex(store.root()));
  });

  it('builds on what another writer of the same database appended or signed meanwhile', async () => {
    // Another process on the same database (SQLite: a second connection to the file, as the CLI
    // opens while the server runs), with its own remembered tree head.
    const { url, dataDir } = ctx.database;
    const second = openDatabase(
      url === undefined ? { dataDir } : { databaseUrl: url, dataDir, tenantWalls: false },
    );
    try {
      const other = createAuditService({
        db: second.db,
        dialect: second.dialect,
        clock: ctx.clock,
        dataDir,
        checkpointEvery: 5,
        writer: second.writer,
      });
      const tenantId = owner.tenantId;
      const start = (await leaves(tenantId)).length;
      const writers = [
        { audit: log(), db: db() },
        { audit: other, db: second.db },
      ];
      let n = start;
      for (let i = 0; i < 24; i++) {
        // Runs of one writer (its remembered head is current) and switches (it is not).
        const writer = writers[Math.floor(i / 3) % 2]!;
        if (i % 2 === 0) {
          await writer.db
            .transaction()
            .execute((trx) => writer.audit.append(trx, event(tenantId, 2000 + i)));
        } else {
          await writer.audit.appendAlone([event(tenantId, 2000 + i)]);
        }
        n++;
        // A head signed without an append, by the writer not appending next.
        if (i % 7 === 6) {
          await writers[(Math.floor((i + 1) / 3) + 1) % 2]!.audit.checkpoint(tenantId);
        }
      }
      const rows = await leaves(tenantId);
      expect(rows.map((r) => r.leaf_index)).toEqual([...Array(n).keys()]);
      const summary = await verifyTenantLog(db(), tenantId, [log().signingKey().publicKey]);
      expect(summary.treeSize).toBe(n);
      const store = new MemoryMerkleStore();
      for (const r of rows) store.append(hashFromHex(r.leaf_hash));
      expect(toHex(summary.root)).toBe(toHex(store.root()));
      const head = await db()
        .selectFrom('audit_tree')
        .select(['tree_size', 'frontier', 'checkpoint_size'])
        .where('tenant_id', '=', tenantId)
        .executeTakeFirstOrThrow();
      expect(Number(head.tree_size)).toBe(n);
      const frontier = CompactTree.fromState(JSON.parse(head.frontier) as FrontierState);
      expect(toHex(frontier.root())).toBe(toHex(store.root()));
      // The head names the last checkpoint, whichever writer signed it.
      const last = await db()
        .selectFrom('audit_checkpoints')
        .select((eb) => eb.fn.max('tree_size').as('size'))
        .where('tenant_id', '=', tenantId)
        .executeTakeFirstOrThrow();
      expect(Number(head.checkpoint_size)).toBe(Number(last.size));
    } finally {
      await second.close();
    }
  });

  it('appendAlone writes all its events or none', async () => {
    const tenantId = owner.tenantId;
    const before = await leaves(tenantId);
    await expect(
      log().appendAlone([event(tenantId, 1), event(tenantId, 2, 'Not A Type')]),
    ).rejects.toBeInstanceOf(TypeError);
    expect(await leaves(tenantId)).toEqual(before);
    const [next] = await log().appendAlone([event(tenantId, 3)]);
    expect(next!.leafIndex).toBe(before.length);
    await log().verify(tenantId);
  });

  it('fails, writing nothing, when the event cannot be stored', async () => {
    const tenantId = owner.tenantId;
    const before = await leaves(tenantId);
    const restore = await breakAuditTable();
    try {
      await expect(log().appendAlone([event(tenantId, 4)])).rejects.toThrow(/audit down/);
      await expect(
        db()
          .transaction()
          .execute((trx) => log().append(trx, event(tenantId, 5))),
      ).rejects.toThrow(/audit down/);
    } finally {
      await restore();
    }
    expect(await leaves(tenantId)).toEqual(before);
    const [next] = await log().appendAlone([event(tenantId, 6)]);
    expect(next!.leafIndex).toBe(before.length);
    await log().verify(tenantId);
  });

  it('refuses a sensitive read in clear whose event cannot be written (fails closed)', async () => {
    const made = await ctx.app.inject({
      method: 'POST',
      url: '/api/v1/contacts',
      headers: owner.headers,
      payload: { firstName: 'Ada', nationalId: '987-65-4321' },
    });
    expect(made.statusCode, made.body).toBe(201);
    const id = made.json<{ id: string }>().id;
    const restore = await breakAuditTable();
    try {
      const res = await ctx.app.inject({ url: `/api/v1/contacts/${id}`, headers: owner.headers });
      expect(res.statusCode).toBe(500);
      expect(res.body).not.toContain('987-65-4321');
    } finally {
      await restore();
    }
    const res = await ctx.app.inject({ url: `/api/v1/contacts/${id}`, headers: owner.headers });
    expect(res.statusCode).toBe(200);
    expect(res.json<{ nationalId: string }>().nationalId).toBe('987-65-4321');
  });

  it.skipIf(dialectUnderTest !== 'sqlite')(
    'refuses an append outside a transaction on SQLite (it would commit apart from its change)',
    async () => {
      const tenantId = owner.tenantId;
      const before = await leaves(tenantId);
      await expect(
        log().append(db() as unknown as Transaction<Database>, event(tenantId, 7)),
      ).rejects.toBeInstanceOf(TypeError);
      expect(await leaves(tenantId)).toEqual(before);
    },
  );
});
