import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { runCli } from '../../src/cli/main.ts';
import { runInTenant } from '../../src/db/tenant-scope.ts';
import { newId } from '../../src/ids.ts';
import { SEALED_SPECS } from '../../src/sealed-specs.ts';
import { censusOfValues } from '../../src/modules/records/reencrypt.ts';
import { readReencryption } from '../../src/modules/records/reencrypt-progress.ts';
import { createTenantReencryption } from '../../src/modules/records/reencrypt-run.ts';
import { createReencryptionWorker } from '../../src/modules/records/reencrypt-worker.ts';
import { createTestContext, type TestContext } from '../helpers/context.ts';
import { trafficClient, versionsInUse as versionsInUseOf } from '../helpers/records.ts';

/**
 * The server's re-encryption job (issue 3, item 5): after a rotation the running server moves
 * every value to the new key version by itself, in throttled batches, while reads and writes go
 * on; a run killed midway is resumed by the next process to take the tenant's lease, from its
 * saved cursor; one process at a time works on a tenant; the audit log gets one started/finished
 * pair per run; `custos keys status` shows the run's progress; the old version can then be
 * retired. Runs on SQLite and PostgreSQL (CUSTOS_TEST_DATABASE_URL).
 */

let ctx: TestContext;
// Records and users: the owner's e-mail and name are under the tenant key too.
const SPECS = SEALED_SPECS;
const savedEnv = { ...process.env };

beforeAll(async () => {
  // Small batches and pauses, so traffic interleaves with many batches.
  ctx = await createTestContext({
    CUSTOS_REENCRYPT_BATCH_SIZE: '3',
    CUSTOS_REENCRYPT_PAUSE_MS: '2',
  });
});
afterAll(async () => ctx?.close());
afterEach(() => {
  for (const name of Object.keys(process.env)) {
    if (name.startsWith('CUSTOS_') && !(name in savedEnv)) delete process.env[name];
  }
  Object.assign(process.env, savedEnv);
  vi.restoreAllMocks();
});

type Values = Record<string, unknown>;
const db = () => ctx.database.handle.db;
/** The settle time the job waits after a rotation (other servers' idea of the active version). */
const settle = () => ctx.clock.advance(11_000);

const { post, expectAll, traffic } = trafficClient(() => ctx);

let n = 0;
const contactInput = () => {
  n += 1;
  return {
    firstName: `First${n}`,
    lastName: `Last${n}`,
    email: `job${n}-${newId().slice(-6)}@example.com`,
    phone: `+1 415 555 ${String(2000 + n).slice(-4)}`,
    notes: `notes ${n}`,
  };
};
const activityInput = (companyId: string) => {
  n += 1;
  return { type: 'note', subject: `about ${n}`, body: `body ${n}`, companyId };
};

const versionsInUse = (tenantId: string) => versionsInUseOf(db(), SPECS, tenantId);

async function subjectKeyCount(tenantId: string): Promise<number> {
  const [status] = await ctx.services.keys.status(tenantId);
  return (status?.versions ?? []).reduce((sum, v) => sum + v.subjectKeys, 0);
}

async function keyEvents(tenantId: string): Promise<string[]> {
  const rows = await db()
    .selectFrom('audit_events')
    .select(['type', 'actor_id', 'target_id', 'reason'])
    .where('tenant_id', '=', tenantId)
    .where('type', 'like', 'keys.%')
    .orderBy('leaf_index')
    .execute();
  return rows.map((r) => `${r.type} ${r.actor_id} ${r.target_id} ${r.reason}`);
}

/** A tenant with `contacts` contacts (subject keys) and `loose` activities under the tenant key. */
async function tenantWithData(contacts: number, loose: number) {
  const s = await ctx.tenant();
  const company = await post(s, '/api/v1/companies', { name: 'Acme' });
  const expected = new Map<string, Values>();
  for (let i = 0; i < contacts; i += 1) {
    const input = contactInput();
    const made = await post(s, '/api/v1/contacts', input);
    expected.set(`/api/v1/contacts/${made.id}`, input);
  }
  for (let i = 0; i < loose; i += 1) {
    const input = activityInput(company.id);
    const made = await post(s, '/api/v1/activities', input);
    expected.set(`/api/v1/activities/${made.id}`, input);
  }
  return { s, company, expected };
}

async function cli(args: string[]) {
  process.env.CUSTOS_DATA_DIR = ctx.database.dataDir;
  if (ctx.database.url) process.env.CUSTOS_DATABASE_URL = ctx.database.url;
  const out: string[] = [];
  vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
  const status = await runCli(args, (line) => out.push(line));
  vi.restoreAllMocks();
  return { status, out: out.join('\n') };
}

describe('the server re-encryption job', () => {
  it('moves every value to the new version by itself while reads and writes go on, and loses nothing', async () => {
    const { s, company, expected } = await tenantWithData(6, 12);
    const { keys, reencryptionWorker } = ctx.services;
    expect(await versionsInUse(s.tenantId)).toEqual([1]);
    const subjectKeys = await subjectKeyCount(s.tenantId);
    expect(subjectKeys).toBeGreaterThanOrEqual(6);
    await keys.rotateTenantKey(s.tenantId);
    // Not before other servers can have seen the rotation.
    expect((await reencryptionWorker.runOnce()).has(s.tenantId)).toBe(false);
    settle();

    let jobDone = false;
    const job = reencryptionWorker.runOnce().finally(() => (jobDone = true));
    const inputs = { contact: contactInput, activity: () => activityInput(company.id) };
    const worker = (n: 1 | 2) => traffic(s, expected, n, () => jobDone, inputs);
    const [results, ...rounds] = await Promise.all([job, worker(1), worker(2)]);
    expect(rounds.every((r) => r >= 3)).toBe(true);
    const result = results.get(s.tenantId);
    expect(result).toMatchObject({ outcome: 'done', targetVersion: 2, started: true });
    if (result?.outcome !== 'done') throw new Error('not done');
    expect(result.rewrap).toMatchObject({ rewrapped: subjectKeys, done: true });
    expect(result.values?.reencrypted).toBeGreaterThan(0);

    await expectAll(s, expected);
    expect(await versionsInUse(s.tenantId)).toEqual([2]);
    const row = await readReencryption(db(), s.tenantId);
    expect(row).toMatchObject({ state: 'done', target_version: 2, lease_owner: null });
    // One started/finished pair, by the server's job, whatever the number of batches.
    const events = await keyEvents(s.tenantId);
    expect(events).toHaveLength(2);
    expect(events[0]).toMatch(
      new RegExp(
        `^keys\\.reencryption_started reencryption v2 pending_values_\\d+;pending_subject_keys_${subjectKeys}$`,
      ),
    );
    expect(events[1]).toMatch(
      new RegExp(
        `^keys\\.reencrypted reencryption v2 values_\\d+;clear_0;subject_keys_${subjectKeys}$`,
      ),
    );
    // Nothing more to do: the next look starts no run and records nothing.
    expect((await reencryptionWorker.runOnce()).size).toBe(0);
    expect(await keyEvents(s.tenantId)).toHaveLength(2);

    expect(await keys.retireVersion(s.tenantId, 1)).toEqual({ minDecryptVersion: 2 });
    await expectAll(s, expected);
    // A retired version leaves nothing for the job to look at.
    expect((await ctx.services.keys.openRotations()).map((r) => r.tenantId)).not.toContain(
      s.tenantId,
    );
  }, 120_000);

  it('resumes a run killed midway from its saved cursor, in another process once the lease expires', async () => {
    const { s, expected } = await tenantWithData(5, 20);
    const { keys } = ctx.services;
    // Contacts' keys are created ahead in small pools: count what the key store holds.
    const subjectKeys = await subjectKeyCount(s.tenantId);
    await keys.rotateTenantKey(s.tenantId);
    settle();
    // Two "processes": their own run objects and lease owners, on the app's database.
    const node = (owner: string) =>
      createTenantReencryption({
        db: ctx.appDatabase.db,
        keys,
        audit: ctx.services.auditLog,
        clock: ctx.clock,
        specs: SPECS,
        owner,
        actor: { kind: 'system', id: 'reencryption' },
      });
    const a = node('node-a');
    const kill = new AbortController();
    let batches = 0;
    const first = await runInTenant(s.tenantId, () =>
      a.runTenant(s.tenantId, {
        batchSize: 4,
        pauseMs: 1,
        signal: kill.signal,
        onValues: () => {
          batches += 1;
          if (batches === 2) kill.abort();
        },
      }),
    );
    expect(first).toMatchObject({ outcome: 'stopped', started: true });
    // Saved: phase, cursor (the 8th loose activity), counters, census; lease given up.
    const ids = (
      await db()
        .selectFrom('activities')
        .select('id')
        .where('tenant_id', '=', s.tenantId)
        .orderBy('id')
        .execute()
    ).map((r) => r.id);
    const saved = await readReencryption(db(), s.tenantId);
    expect(saved).toMatchObject({
      state: 'running',
      phase: 'values',
      rewrapped: subjectKeys,
      reencrypted: 16,
      cursor_table: 'activities',
      cursor_id: ids[7],
      lease_owner: null,
    });
    // Left under v1: 12 activities' two values and the owner's e-mail and name.
    expect(JSON.parse(saved!.census)).toMatchObject({ byVersion: { '1': 26, '2': 16 } });
    await expectAll(s, expected);

    // The status reads the run's row: progress without counting every value again.
    const status = await cli(['keys', 'status', '--tenant', s.tenant]);
    expect(status.status).toBe(0);
    expect(status.out).toMatch(/v1 +decrypt-only +0 subject keys +26 values/);
    expect(status.out).toMatch(
      /re-encryption to v2: running \(values\), \d+ subject keys re-wrapped, 16 values re-encrypted, 26 values left, last batch \S+, paused/,
    );
    expect(status.out).toContain('values as counted by the re-encryption job at');

    // As if node A had died holding its lease: node B may not take the tenant until it expires.
    await db()
      .updateTable('key_reencryption')
      .set({
        lease_owner: 'node-a',
        lease_until: new Date(ctx.clock.now().getTime() + 60_000).toISOString(),
      })
      .where('tenant_id', '=', s.tenantId)
      .execute();
    const b = node('node-b');
    expect(await runInTenant(s.tenantId, () => b.runTenant(s.tenantId))).toMatchObject({
      outcome: 'busy',
      holder: 'node-a',
    });
    // The server's worker skips it too.
    expect((await ctx.services.reencryptionWorker.runOnce()).has(s.tenantId)).toBe(false);
    await expect(keys.retireVersion(s.tenantId, 1)).rejects.toMatchObject({
      code: 'keys.version_in_use',
    });

    ctx.clock.advance(61_000);
    const progress: number[] = [];
    const second = await runInTenant(s.tenantId, () =>
      b.runTenant(s.tenantId, {
        batchSize: 4,
        pauseMs: 0,
        onValues: (p) => progress.push(p.reencrypted),
      }),
    );
    expect(second).toMatchObject({ outcome: 'done', started: false });
    // From the cursor on: 12 activities left, 3 batches of 4 (8 values each), then the users.
    expect(progress).toEqual([8, 16, 24, 26]);
    expect(await versionsInUse(s.tenantId)).toEqual([2]);
    expect(await readReencryption(db(), s.tenantId)).toMatchObject({
      state: 'done',
      reencrypted: 42,
      lease_owner: null,
    });
    // One run, two processes: still one started/finished pair, with the run's totals.
    expect(await keyEvents(s.tenantId)).toEqual([
      `keys.reencryption_started reencryption v2 pending_values_42;pending_subject_keys_${subjectKeys}`,
      `keys.reencrypted reencryption v2 values_42;clear_0;subject_keys_${subjectKeys}`,
    ]);
    const done = await cli(['keys', 'status', '--tenant', s.tenant]);
    expect(done.out).toMatch(/v1 +decrypt-only +0 subject keys +0 values/);
    expect(done.out).toMatch(
      /re-encryption to v2: done at \S+, \d+ subject keys re-wrapped, 42 values re-encrypted/,
    );

    expect(await keys.retireVersion(s.tenantId, 1)).toEqual({ minDecryptVersion: 2 });
    await expectAll(s, expected);
  }, 120_000);

  it('lets one node of two work on a tenant at a time, and records one run', async () => {
    const { s, expected } = await tenantWithData(2, 8);
    await ctx.services.keys.rotateTenantKey(s.tenantId);
    settle();
    const worker = (owner: string) =>
      createReencryptionWorker({
        db: ctx.appDatabase.db,
        keys: ctx.services.keys,
        clock: ctx.clock,
        run: createTenantReencryption({
          db: ctx.appDatabase.db,
          keys: ctx.services.keys,
          audit: ctx.services.auditLog,
          clock: ctx.clock,
          specs: SPECS,
          owner,
          actor: { kind: 'system', id: 'reencryption' },
        }),
        batchSize: 2,
        pauseMs: 5,
      });
    const [one, two] = await Promise.all([worker('node-1').runOnce(), worker('node-2').runOnce()]);
    const outcomes = [one.get(s.tenantId)?.outcome, two.get(s.tenantId)?.outcome];
    // One did the run; the other found it held (busy), finished (up_to_date) or nothing to do.
    expect(outcomes.filter((o) => o === 'done')).toHaveLength(1);
    expect(
      outcomes.filter((o) => o !== 'done' && o !== undefined && o !== 'busy' && o !== 'up_to_date'),
    ).toEqual([]);
    expect((await keyEvents(s.tenantId)).map((e) => e.split(' ')[0])).toEqual([
      'keys.reencryption_started',
      'keys.reencrypted',
    ]);
    expect(await versionsInUse(s.tenantId)).toEqual([2]);
    await expectAll(s, expected);
  });

  it('stops after its batch at shutdown and the next start resumes', async () => {
    const { s, expected } = await tenantWithData(0, 10);
    await ctx.services.keys.rotateTenantKey(s.tenantId);
    settle();
    const worker = createReencryptionWorker({
      db: ctx.appDatabase.db,
      keys: ctx.services.keys,
      clock: ctx.clock,
      run: ctx.services.reencryption,
      batchSize: 2,
      pauseMs: 20,
    });
    const results: string[] = [];
    const worker2 = createReencryptionWorker({
      db: ctx.appDatabase.db,
      keys: ctx.services.keys,
      clock: ctx.clock,
      run: ctx.services.reencryption,
      batchSize: 2,
      pauseMs: 20,
      onResult: (tenantId, result) => {
        if (tenantId === s.tenantId) results.push(result.outcome);
      },
    });
    // As the server does: start on an interval, stop at shutdown once the first batch is saved.
    worker2.start(5);
    for (let i = 0; i < 1000; i += 1) {
      const row = await readReencryption(db(), s.tenantId);
      if (row?.cursor_id != null) break;
      await sleep(5);
    }
    await worker2.stop();
    expect(results).toEqual(['stopped']);
    expect(await readReencryption(db(), s.tenantId)).toMatchObject({
      state: 'running',
      lease_owner: null,
    });
    const half = await censusOfValues(db(), SPECS, s.tenantId);
    expect(half.byVersion.get(1)).toBeGreaterThan(0);
    const again = await worker.runOnce();
    expect(again.get(s.tenantId)).toMatchObject({ outcome: 'done', started: false });
    expect(await versionsInUse(s.tenantId)).toEqual([2]);
    expect((await keyEvents(s.tenantId)).map((e) => e.split(' ')[0])).toEqual([
      'keys.reencryption_started',
      'keys.reencrypted',
    ]);
    await expectAll(s, expected);
  });
});
