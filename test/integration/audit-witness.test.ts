import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { runCli } from '../../src/cli/main.ts';
import { AuditIntegrityError } from '../../src/core/audit/index.ts';
import { readTree } from '../../src/modules/audit/repository.ts';
import { verifyTenantLog } from '../../src/modules/audit/verify.ts';
import { checkWitnessedHeads, readWitnessFile } from '../../src/modules/audit/witness.ts';
import { rewriteLog as rewrite } from '../helpers/audit-rewrite.ts';
import { createTestContext, type TestContext } from '../helpers/context.ts';

let ctx: TestContext;
let witnessFile: string;
const savedEnv = { ...process.env };

beforeAll(async () => {
  witnessFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'custos-witness-')), 'heads.jsonl');
  ctx = await createTestContext({
    CUSTOS_AUDIT_WITNESS_FILE: witnessFile,
    CUSTOS_AUDIT_CHECKPOINT_EVERY: '4',
  });
});
afterAll(async () => {
  await ctx?.close();
  fs.rmSync(path.dirname(witnessFile), { recursive: true, force: true });
});
afterEach(() => {
  for (const name of Object.keys(process.env)) {
    if (name.startsWith('CUSTOS_') && !(name in savedEnv)) delete process.env[name];
  }
  Object.assign(process.env, savedEnv);
  vi.restoreAllMocks();
});

const db = () => ctx.database.handle.db;
const trusted = () => [ctx.services.auditLog.signingKey().publicKey];

async function tenantWithLog(size: number) {
  const owner = await ctx.tenant();
  for (let i = (await readTree(db(), owner.tenantId)).size; i < size; i++) {
    await db()
      .transaction()
      .execute((trx) =>
        ctx.services.auditLog.append(trx, {
          tenantId: owner.tenantId,
          type: 'record.updated',
          actor: { kind: 'user', id: owner.userId },
          target: { type: 'contact', id: `c${i}` },
          fields: ['email'],
        }),
      );
  }
  await ctx.services.auditLog.checkpoint(owner.tenantId);
  return owner;
}

/** See test/helpers/audit-rewrite.ts: a full rewrite re-signed with the real key. */
const rewriteLog = (
  tenantId: string,
  edit: (body: Record<string, unknown>, leafIndex: number) => void,
  keep?: number,
) => rewrite(db, ctx.database.dataDir, tenantId, edit, keep);

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

const witnessedSizes = (tenantId: string) =>
  readWitnessFile(witnessFile)
    .filter((h) => h.tenantId === tenantId)
    .map((h) => h.treeSize);

describe('outside witness of signed tree heads', () => {
  it('appends every committed checkpoint to the witness file as a JSON line', async () => {
    const owner = await tenantWithLog(10);
    // Checkpoints at 1 (first event), 5, 9 (every 4) and 10 (on demand).
    expect(witnessedSizes(owner.tenantId)).toEqual([1, 5, 9, 10]);
    const lines = fs.readFileSync(witnessFile, 'utf8').trim().split('\n');
    expect(Object.keys(JSON.parse(lines.at(-1)!) as object).sort()).toEqual([
      'keyId',
      'rootHash',
      'signature',
      'tenantId',
      'timestamp',
      'treeSize',
    ]);
    // Published again: nothing twice.
    expect(await ctx.services.auditLog.publishToWitness()).toBe(0);
    expect(witnessedSizes(owner.tenantId)).toEqual([1, 5, 9, 10]);
  });

  it('never witnesses a checkpoint of a transaction that rolled back', async () => {
    const owner = await tenantWithLog(3);
    const before = witnessedSizes(owner.tenantId);
    await expect(
      db()
        .transaction()
        .execute(async (trx) => {
          for (let i = 0; i < 4; i++) {
            await ctx.services.auditLog.append(trx, {
              tenantId: owner.tenantId,
              type: 'record.created',
              actor: { kind: 'system', id: 'test' },
            });
          }
          // The 5th leaf was signed in this transaction: now it fails.
          throw new Error('change failed');
        }),
    ).rejects.toThrow('change failed');
    await ctx.services.auditLog.publishToWitness();
    expect(witnessedSizes(owner.tenantId)).toEqual(before);
    const ok = await cli(['audit', 'verify', '--tenant', owner.tenant, '--witness', witnessFile]);
    expect(ok.status).toBe(0);
  });

  it('passes on an intact log and names the problem after a full rewrite signed with the real key', async () => {
    const owner = await tenantWithLog(12);
    const ok = await cli(['audit', 'verify', '--tenant', owner.tenant, '--witness', witnessFile]);
    expect(ok.status).toBe(0);
    expect(ok.out).toContain(`${owner.tenant}: 12 events verified`);
    expect(ok.out).toMatch(/4 witnessed heads consistent/);

    await rewriteLog(owner.tenantId, (body, i) => {
      if (i === 6) body.fields = ['name'];
    });
    // The database alone can no longer tell: the rewrite is self-consistent and signed.
    const summary = await verifyTenantLog(db(), owner.tenantId, trusted());
    expect(summary.treeSize).toBe(12);
    expect((await cli(['audit', 'verify', '--tenant', owner.tenant])).status).toBe(0);

    const bad = await cli(['audit', 'verify', '--tenant', owner.tenant, '--witness', witnessFile]);
    expect(bad.status).toBe(2);
    // Heads 1 and 5 still fit; the one at 9, covering leaf 6, does not.
    expect(bad.out).toContain(`${owner.tenant}: FAILED at leaf 5: WITNESS_MISMATCH`);
    expect(bad.out).toContain('the log was rewritten');
  });

  it('detects a log rewritten shorter (events removed at the end) as WITNESS_AHEAD', async () => {
    const owner = await tenantWithLog(10);
    await rewriteLog(owner.tenantId, () => undefined, 7);
    expect((await verifyTenantLog(db(), owner.tenantId, trusted())).treeSize).toBe(7);
    const bad = await cli(['audit', 'verify', '--tenant', owner.tenant, '--witness', witnessFile]);
    expect(bad.status).toBe(2);
    expect(bad.out).toContain('WITNESS_AHEAD');
  });

  it('detects a tenant whose whole log vanished from the database', async () => {
    const owner = await tenantWithLog(5);
    const heads = readWitnessFile(witnessFile).filter((h) => h.tenantId === owner.tenantId);
    const other = await tenantWithLog(2);
    const local = path.join(path.dirname(witnessFile), 'gone.jsonl');
    // A witness holding a tenant id the database does not have.
    fs.writeFileSync(
      local,
      heads.map((h) => `${JSON.stringify({ ...h, tenantId: 'gone-tenant' })}\n`).join(''),
    );
    const res = await cli(['audit', 'verify', '--witness', local]);
    expect(res.status).toBe(2);
    expect(res.out).toContain('tenant gone-tenant: FAILED: WITNESS_AHEAD');
    expect(other.tenantId).not.toBe(owner.tenantId);
  });

  it('refuses a witnessed head whose signature was forged, and a malformed witness line', async () => {
    const owner = await tenantWithLog(4);
    const tree = await verifyTenantLog(db(), owner.tenantId, trusted());
    const [head] = readWitnessFile(witnessFile).filter((h) => h.tenantId === owner.tenantId);
    const forged = { ...head!, rootHash: '00'.repeat(32) };
    const error = await checkWitnessedHeads(
      db(),
      { tenantId: owner.tenantId, treeSize: tree.treeSize, root: tree.root },
      [forged],
      trusted(),
    ).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(AuditIntegrityError);
    expect((error as AuditIntegrityError).code).toBe('CHECKPOINT_SIGNATURE_INVALID');

    const broken = path.join(path.dirname(witnessFile), 'broken.jsonl');
    fs.writeFileSync(broken, '{"treeSize": 1}\n');
    const res = await cli(['audit', 'verify', '--tenant', owner.tenant, '--witness', broken]);
    expect(res.status).toBe(2);
    expect(res.err).toContain('witness line 1 is malformed');
  });
});
