import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { runCli } from '../../src/cli/main.ts';
import { readTree } from '../../src/modules/audit/repository.ts';
import { readWitnessFile } from '../../src/modules/audit/witness.ts';
import { rewriteLog } from '../helpers/audit-rewrite.ts';
import { createTestContext, type TestContext } from '../helpers/context.ts';
import { freePort, Rsyslog } from '../helpers/rsyslog.ts';

let ctx: TestContext;
let rsyslog: Rsyslog;
const savedEnv = { ...process.env };

beforeAll(async () => {
  rsyslog = new Rsyslog(await freePort());
  await rsyslog.start();
  ctx = await createTestContext({
    CUSTOS_AUDIT_WITNESS_SYSLOG: `tcp://127.0.0.1:${rsyslog.port}`,
    CUSTOS_AUDIT_CHECKPOINT_EVERY: '4',
  });
});
afterAll(async () => {
  await ctx?.close();
  await rsyslog?.dispose();
});
afterEach(() => {
  for (const name of Object.keys(process.env)) {
    if (name.startsWith('CUSTOS_') && !(name in savedEnv)) delete process.env[name];
  }
  Object.assign(process.env, savedEnv);
  vi.restoreAllMocks();
});

const db = () => ctx.database.handle.db;

async function grow(tenantId: string, userId: string, size: number) {
  for (let i = (await readTree(db(), tenantId)).size; i < size; i++) {
    await db()
      .transaction()
      .execute((trx) =>
        ctx.services.auditLog.append(trx, {
          tenantId,
          type: 'record.updated',
          actor: { kind: 'user', id: userId },
          target: { type: 'contact', id: `c${i}` },
          fields: ['email'],
        }),
      );
  }
}

/** The tree sizes rsyslog has written for a tenant, once `size` is among them. */
async function witnessed(tenantId: string, size: number): Promise<number[]> {
  const sizes = () =>
    readWitnessFile(rsyslog.file)
      .filter((h) => h.tenantId === tenantId)
      .map((h) => h.treeSize);
  // rsyslog may be caught mid-line while it writes: a torn last line is read again later.
  await rsyslog.waitFor(() => {
    try {
      return sizes().includes(size);
    } catch {
      return false;
    }
  });
  return sizes();
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

describe('syslog witness (CUSTOS_AUDIT_WITNESS_SYSLOG) with a real rsyslog', () => {
  it('sends every committed checkpoint as an RFC 5424 message rsyslog writes down', async () => {
    const owner = await ctx.tenant();
    await grow(owner.tenantId, owner.userId, 12);
    await ctx.services.auditLog.checkpoint(owner.tenantId);
    const sizes = await witnessed(owner.tenantId, 12);
    expect(sizes).toEqual(expect.arrayContaining([1, 5, 9, 12]));
    const line = rsyslog.lines().find((l) => l.includes(owner.tenantId))!;
    expect(line).toMatch(/^<110>1 \S+Z \S+ custos - checkpoint - \{"tenantId":/);
  });

  it('detects a full rewrite of the database against what rsyslog wrote', async () => {
    const owner = await ctx.tenant();
    await grow(owner.tenantId, owner.userId, 12);
    await ctx.services.auditLog.checkpoint(owner.tenantId);
    await witnessed(owner.tenantId, 12);
    const ok = await cli(['audit', 'verify', '--tenant', owner.tenant, '--witness', rsyslog.file]);
    expect(ok.status, ok.out).toBe(0);
    expect(ok.out).toMatch(/4 witnessed heads consistent/);

    await rewriteLog(db, ctx.database.dataDir, owner.tenantId, (body, i) => {
      if (i === 6) body.fields = ['name'];
    });
    // The rewritten database is self-consistent and signed with the real key...
    expect((await cli(['audit', 'verify', '--tenant', owner.tenant])).status).toBe(0);
    // ...but not with what the receiver saw.
    const bad = await cli(['audit', 'verify', '--tenant', owner.tenant, '--witness', rsyslog.file]);
    expect(bad.status).toBe(2);
    expect(bad.out).toContain(`${owner.tenant}: FAILED at leaf 5: WITNESS_MISMATCH`);
  });

  it('offers the heads again when the receiver was down, until it confirms them', async () => {
    const owner = await ctx.tenant();
    await grow(owner.tenantId, owner.userId, 4);
    await ctx.services.auditLog.publishToWitness();
    await rsyslog.stop();
    await grow(owner.tenantId, owner.userId, 10);
    await expect(ctx.services.auditLog.publishToWitness()).rejects.toThrow();
    await rsyslog.start();
    expect(await ctx.services.auditLog.publishToWitness()).toBeGreaterThanOrEqual(2);
    expect(await witnessed(owner.tenantId, 9)).toEqual(expect.arrayContaining([1, 5, 9]));
  });
});
