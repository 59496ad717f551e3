import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Actor } from '../../src/core/policy/index.ts';
import { importContacts } from '../../src/modules/contacts/import.ts';
import { IMPORT_BATCH_ROWS } from '../../src/modules/contacts/import-store.ts';
import { createTestContext, type Session, type TestContext } from '../helpers/context.ts';

let ctx: TestContext;

beforeAll(async () => {
  ctx = await createTestContext();
});
afterAll(async () => ctx?.close());

interface AuditItem {
  type: string;
  actor: { kind: string; id: string | null };
  target: { type: string; id: string } | null;
  outcome: string;
  reason: string | null;
  fields: string[];
}

const importCsv = (s: Session, csv: string, query = '') =>
  ctx.app.inject({
    method: 'POST',
    url: `/api/v1/contacts/import${query}`,
    headers: { ...s.headers, 'content-type': 'text/csv' },
    payload: csv,
  });

async function imported(s: Session): Promise<AuditItem[]> {
  const res = await ctx.app.inject({
    url: '/api/v1/audit/events?type=contacts.imported&limit=50',
    headers: s.headers,
  });
  expect(res.statusCode, res.body).toBe(200);
  return res.json<{ items: AuditItem[] }>().items;
}

async function contactCount(tenantId: string): Promise<number> {
  const row = await ctx.database.handle.db
    .selectFrom('contacts')
    .select((eb) => eb.fn.countAll<number | string>().as('n'))
    .where('tenant_id', '=', tenantId)
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

/** What `custos import` passes to the import: the CLI as actor, the import's dependencies. */
function asCli(s: Session, requestId: string) {
  const cli: Actor = {
    kind: 'system',
    tenantId: s.tenantId,
    job: 'cli',
    role: 'owner',
    request: { requestId, ip: null, userAgent: 'custos-cli' },
  };
  const deps = {
    db: ctx.database.handle.db,
    clock: ctx.clock,
    keys: ctx.services.keys,
    crypto: ctx.services.contacts.crypto,
  };
  return { cli, deps };
}

const CSV = [
  'first_name,last_name,email,title',
  'Ada,Lovelace,ada@example.com,Countess',
  'Ada,Again,ADA@example.com,Duplicate',
  'Bad,Row,not-an-email,x',
  'Alan,Turing,alan@example.com,',
].join('\n');

describe('contacts.imported audit event', () => {
  it('records a best-effort import over the API with its mode, source and row counts', async () => {
    const s = await ctx.tenant();
    const res = await importCsv(s, CSV, '?mode=best-effort');
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toMatchObject({ created: 2, skipped: 1, failed: 1, committed: true });
    const events = await imported(s);
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({
      actor: { kind: 'user', id: s.userId },
      target: { type: 'contact_import', id: expect.any(String) },
      outcome: 'success',
      reason: 'mode=best-effort;source=api;created=2;merged=0;skipped=1;failed=1',
    });
    expect(events[0]!.fields).toEqual(['email', 'firstName', 'lastName', 'title']);
    // No value of the file enters the log.
    expect(JSON.stringify(events)).not.toMatch(/Lovelace|ada@example|Turing/i);
  });

  it('counts merged rows, and a second import is a second event', async () => {
    const s = await ctx.tenant();
    expect((await importCsv(s, CSV, '?mode=best-effort')).statusCode).toBe(200);
    const again = await importCsv(s, CSV, '?mode=best-effort&onDuplicate=merge');
    expect(again.statusCode, again.body).toBe(200);
    const events = await imported(s);
    expect(events.map((e) => e.reason).sort()).toEqual([
      'mode=best-effort;source=api;created=0;merged=3;skipped=0;failed=1',
      'mode=best-effort;source=api;created=2;merged=0;skipped=1;failed=1',
    ]);
    expect(new Set(events.map((e) => e.target?.id)).size).toBe(2);
  });

  it('records a refused all-or-nothing import as a failure that wrote nothing', async () => {
    const s = await ctx.tenant();
    const res = await importCsv(s, CSV);
    expect(res.statusCode).toBe(400);
    expect(await contactCount(s.tenantId)).toBe(0);
    expect(await imported(s)).toEqual([
      expect.objectContaining({
        outcome: 'failure',
        reason: 'mode=all-or-nothing;source=api;created=0;merged=0;skipped=1;failed=1',
      }),
    ]);
    const ok = await importCsv(s, 'first_name,email\nGrace,grace@example.com\n');
    expect(ok.statusCode, ok.body).toBe(200);
    expect((await imported(s)).map((e) => `${e.outcome} ${e.reason}`)).toContain(
      'success mode=all-or-nothing;source=api;created=1;merged=0;skipped=0;failed=0',
    );
  });

  it('names the CLI as source, and imports nothing when the event cannot be written', async () => {
    const s = await ctx.tenant();
    const { cli, deps } = asCli(s, 'r-1');
    const csv = () => Readable.from([Buffer.from('first_name,email\nLin,lin@example.com\n')]);
    const report = await importContacts({ ...deps, audit: ctx.services.auditLog }, cli, csv(), {
      mode: 'best-effort',
    });
    expect(report.created).toBe(1);
    expect(await imported(s)).toEqual([
      expect.objectContaining({
        actor: { kind: 'system', id: 'cli' },
        reason: 'mode=best-effort;source=cli;created=1;merged=0;skipped=0;failed=0',
      }),
    ]);
    // Fail closed: the append throws, the rows of its transaction are not written.
    const broken = {
      append: () => Promise.reject(new Error('audit log unavailable')),
    };
    const other = () =>
      Readable.from([Buffer.from('first_name,email\nMo,mo@example.com\nJo,jo@example.com\n')]);
    for (const mode of ['all-or-nothing', 'best-effort'] as const) {
      await expect(
        importContacts({ ...deps, audit: broken }, cli, other(), { mode }),
      ).rejects.toThrow('audit log unavailable');
    }
    expect(await contactCount(s.tenantId)).toBe(1);
  });
  it('best-effort: every committed batch has its event, so an import stopped midway leaves no unaudited rows', async () => {
    const s = await ctx.tenant();
    const { cli, deps } = asCli(s, 'r-2');
    const rows = 2 * IMPORT_BATCH_ROWS + 5;
    const csv = () =>
      Readable.from([
        Buffer.from(
          `first_name,email\n${Array.from({ length: rows }, (_, i) => `P${i},p${i}@batch.example\n`).join('')}`,
        ),
      ]);
    // The audit log goes away after two appends: the third batch (and its event) must not commit.
    let appends = 0;
    const failing = {
      append: (...args: Parameters<typeof ctx.services.auditLog.append>) =>
        ++appends > 2
          ? Promise.reject(new Error('audit log unavailable'))
          : ctx.services.auditLog.append(...args),
    };
    await expect(
      importContacts({ ...deps, audit: failing }, cli, csv(), { mode: 'best-effort' }),
    ).rejects.toThrow('audit log unavailable');
    expect(await contactCount(s.tenantId)).toBe(2 * IMPORT_BATCH_ROWS);
    const events = await imported(s);
    expect(events.map((e) => e.reason).sort()).toEqual([
      `mode=best-effort;source=cli;created=${IMPORT_BATCH_ROWS};merged=0;skipped=0;failed=0;batch=1`,
      `mode=best-effort;source=cli;created=${2 * IMPORT_BATCH_ROWS};merged=0;skipped=0;failed=0;batch=2`,
    ]);
    expect(new Set(events.map((e) => e.target?.id)).size).toBe(1);

    // Run to the end, the last batch carries the final counts without a batch number.
    const done = await importContacts({ ...deps, audit: ctx.services.auditLog }, cli, csv(), {
      mode: 'best-effort',
    });
    expect(done.created).toBe(5);
    const reasons = (await imported(s)).map((e) => e.reason);
    expect(reasons).toContain(
      `mode=best-effort;source=cli;created=5;merged=0;skipped=${2 * IMPORT_BATCH_ROWS};failed=0`,
    );
  });
});
