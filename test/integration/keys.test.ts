import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { runCli } from '../../src/cli/main.ts';
import { systemClock } from '../../src/clock.ts';
import { loadConfig } from '../../src/config.ts';
import { encryptField } from '../../src/core/crypto/index.ts';
import { newId } from '../../src/ids.ts';
import { assertKeysUsable, openKeys } from '../../src/modules/keys/open.ts';
import type { Actor } from '../../src/core/policy/index.ts';
import { activitySpec } from '../../src/modules/activities/spec.ts';
import { companySpec } from '../../src/modules/companies/spec.ts';
import { createRecordService } from '../../src/modules/records/service.ts';
import type { OpenedKeys } from '../../src/modules/keys/open.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { SOFTHSM_LIBRARY, createSoftHsmToken, describeWithSoftHsm } from '../helpers/softhsm.ts';

let main: TestDatabase;
/** The database the helpers below use: `main`, or the PKCS#11 suite's own. */
let database: TestDatabase;
const savedEnv = { ...process.env };

beforeAll(async () => {
  main = await createTestDatabase();
});
afterAll(async () => main?.drop());
beforeEach(() => {
  database = main;
});
afterEach(() => {
  for (const name of Object.keys(process.env)) {
    if (name.startsWith('CUSTOS_') && !(name in savedEnv)) delete process.env[name];
  }
  Object.assign(process.env, savedEnv);
  vi.restoreAllMocks();
});

function env(extra: Record<string, string> = {}): Record<string, string> {
  return {
    CUSTOS_DATA_DIR: database.dataDir,
    ...(database.url ? { CUSTOS_DATABASE_URL: database.url } : {}),
    ...extra,
  };
}

async function cli(args: string[], extra: Record<string, string> = {}) {
  Object.assign(process.env, env(extra));
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

async function open(extra: Record<string, string> = {}): Promise<OpenedKeys> {
  return openKeys(loadConfig(env(extra)), { clock: systemClock });
}

async function tenantId(slug: string): Promise<string> {
  const row = await database.handle.db
    .selectFrom('tenants')
    .select('id')
    .where('slug', '=', slug)
    .executeTakeFirstOrThrow();
  return row.id;
}

/** A contact row as written before field encryption (migration 0007): clear, no index. */
function clearContact(tenant: string) {
  const now = new Date().toISOString();
  return {
    tenant_id: tenant,
    created_at: now,
    updated_at: now,
    version: 1,
    email: `old-${newId().slice(-8)}@example.com`,
    notes: 'clear',
  };
}

/** The tenant's key-management audit events, oldest first. */
async function keyEvents(id: string) {
  const rows = await database.handle.db
    .selectFrom('audit_events')
    .select(['type', 'actor_kind', 'actor_id', 'target_type', 'target_id', 'reason'])
    .where('tenant_id', '=', id)
    .where('type', 'like', 'keys.%')
    .orderBy('leaf_index')
    .execute();
  return rows.map((r) => ({
    type: r.type,
    actor: `${r.actor_kind}:${r.actor_id}`,
    target: `${r.target_type}:${r.target_id}`,
    reason: r.reason,
  }));
}

/**
 * A tenant without users or keys, as one made before encryption (`setup` seals its owner's
 * e-mail and name, which creates the tenant's data key and two values under it).
 */
async function bareTenant(slug: string): Promise<string> {
  const id = newId();
  await database.handle.db
    .insertInto('tenants')
    .values({ id, slug, name: slug, created_at: new Date().toISOString() })
    .execute();
  return id;
}

async function setup(slug: string) {
  const result = await cli(
    ['setup', '--tenant', slug, '--name', 'Acme', '--email', `owner@${slug}.example`],
    { CUSTOS_SETUP_PASSWORD: 'a long and unguessable setup passphrase' },
  );
  expect(result.status).toBe(0);
  return tenantId(slug);
}

describe('custos keys', () => {
  it('shows status, rotates with re-wrap progress, and retires only what nothing needs', async () => {
    const id = await bareTenant('keys-cli');
    const keys = await open();
    for (let i = 0; i < 5; i += 1) await keys.service.subjectKey(id, newId(), { create: true });
    await keys.service.close();

    const status = await cli(['keys', 'status', '--tenant', 'keys-cli']);
    expect(status.status).toBe(0);
    expect(status.out).toContain('keys-cli: data key v1 active');
    expect(status.out).toMatch(/v1 +active +5 subject keys/);

    const rotated = await cli(['keys', 'rotate', '--tenant', 'keys-cli', '--no-wait']);
    expect(rotated.out).toBe('keys-cli: data key v2 active (v1 now decrypt-only)');

    // Pretend the rotation is old enough for every server to have seen it.
    const backdate = await open();
    await backdate.store.db
      .updateTable('tenant_keys')
      .set({ deactivated_at: '2020-01-01T00:00:00.000Z' })
      .execute();
    await backdate.service.close();

    const refused = await cli(['keys', 'retire', '--tenant', 'keys-cli', '--version', '1']);
    expect(refused.status).toBe(1);
    expect(refused.err).toContain('keys.version_in_use');
    expect(refused.err).toContain('5 subject keys');

    const rewrap = await cli(['keys', 'rewrap', '--tenant', 'keys-cli', '--batch-size', '2']);
    expect(rewrap.out).toBe('keys-cli: re-wrapped 5, 0 left');

    const retired = await cli(['keys', 'retire', '--tenant', 'keys-cli', '--version', '1']);
    expect(retired.status).toBe(0);
    expect(retired.out).toBe('keys-cli: v1 retired; values decrypt from v2');
    expect((await cli(['keys', 'status', '--tenant', 'keys-cli'])).out).toMatch(
      /decrypts from v2[\s\S]*v1 +retired +0 subject keys +0 values[\s\S]*v2 +active +5 subject keys/,
    );
    expect((await keyEvents(id)).map((e) => `${e.type} ${e.target} ${e.reason}`)).toEqual([
      'keys.rotated tenant_data_key:v2 previous_v1',
      'keys.version_retired tenant_data_key:v1 min_decrypt_v2',
    ]);
  });

  it('rotate waits for the re-wrap and prints a progress line per batch', async () => {
    const id = await bareTenant('keys-wait');
    const keys = await open();
    for (let i = 0; i < 3; i += 1) await keys.service.subjectKey(id, newId(), { create: true });
    await keys.service.close();
    const result = await cli(['keys', 'rotate', '--tenant', 'keys-wait', '--batch-size', '2']);
    expect(result.out.split('\n')).toEqual([
      'keys-wait: data key v2 active (v1 now decrypt-only)',
      'keys-wait: re-wrapped 2, 1 left',
      'keys-wait: re-wrapped 3, 0 left',
      'keys-wait: every subject key is wrapped by v2',
      "keys-wait: every value is encrypted under v2 or its subject's key",
    ]);
    // Both steps are in the tenant's audit log, by the system actor `cli`: the rotation, then
    // one started/finished pair for the re-encryption run (not one event per batch).
    expect(await keyEvents(id)).toEqual([
      {
        type: 'keys.rotated',
        actor: 'system:cli',
        target: 'tenant_data_key:v2',
        reason: 'previous_v1',
      },
      {
        type: 'keys.reencryption_started',
        actor: 'system:cli',
        target: 'tenant_data_key:v2',
        reason: 'pending_values_0;pending_subject_keys_3',
      },
      {
        type: 'keys.reencrypted',
        actor: 'system:cli',
        target: 'tenant_data_key:v2',
        reason: 'values_0;clear_0;subject_keys_3',
      },
    ]);
  });

  it('re-encrypts values under the old version and values left in clear, then retire succeeds', async () => {
    const id = await setup('keys-values');
    const keys = await open();
    const actor: Actor = {
      kind: 'system',
      tenantId: id,
      job: 'test',
      role: 'owner',
      request: { requestId: 'test', ip: null, userAgent: null },
    };
    const deps = { db: database.handle.db, clock: systemClock, keys: keys.service };
    const company = await createRecordService(companySpec, deps).create(actor, { name: 'Acme' });
    const activities = createRecordService(activitySpec, deps);
    for (let i = 0; i < 3; i += 1) {
      await activities.create(actor, {
        type: 'note',
        subject: `s${i}`,
        body: `b${i}`,
        companyId: company.id,
      });
    }
    await keys.service.close();
    // A contact written before encryption (migration 0007): clear values, no blind index.
    await database.handle.db
      .insertInto('contacts')
      .values({ ...clearContact(id), id: newId() })
      .execute();
    expect((await cli(['keys', 'status', '--tenant', 'keys-values'])).out).toMatch(
      /v1 +active +0 subject keys +8 values[\s\S]*2 values stored in clear/,
    );
    expect((await cli(['keys', 'rotate', '--tenant', 'keys-values', '--no-wait'])).status).toBe(0);
    const backdate = await open();
    await backdate.store.db
      .updateTable('tenant_keys')
      .set({ deactivated_at: '2020-01-01T00:00:00.000Z' })
      .execute();
    await backdate.service.close();
    const refused = await cli(['keys', 'retire', '--tenant', 'keys-values', '--version', '1']);
    expect(refused.status).toBe(1);
    // The owner's e-mail and name are two of them.
    expect(refused.err).toContain('still encrypts 8 values');

    const done = await cli(['keys', 'reencrypt', '--tenant', 'keys-values', '--batch-size', '2']);
    expect(done.status).toBe(0);
    expect(done.out.split('\n').at(-1)).toBe(
      "keys-values: every value is encrypted under v2 or its subject's key",
    );
    expect(done.out).toContain('keys-values: re-encrypted');
    const status = (await cli(['keys', 'status', '--tenant', 'keys-values'])).out;
    expect(status).toMatch(/v1 +decrypt-only +0 subject keys +0 values/);
    expect(status).toMatch(/v2 +active +1 subject keys +8 values/);
    expect(status).toContain('2 values under subject keys');
    expect(status).not.toContain('in clear');
    expect(
      (await cli(['keys', 'retire', '--tenant', 'keys-values', '--version', '1'])).status,
    ).toBe(0);
    // A tenant created before encryption has clear values and no keys at all.
    const bare = await bareTenant('keys-bare');
    const clearId = newId();
    await database.handle.db
      .insertInto('contacts')
      .values({ ...clearContact(bare), id: clearId })
      .execute();
    expect((await cli(['keys', 'reencrypt', '--tenant', 'keys-bare'])).status).toBe(0);
    expect((await cli(['keys', 'status', '--tenant', 'keys-bare'])).out).toMatch(
      /v1 +active +1 subject keys +0 values[\s\S]*2 values under subject keys/,
    );
    await bareTenant('keys-empty');
    expect((await cli(['keys', 'reencrypt', '--tenant', 'keys-empty'])).out).toBe(
      'keys-empty: no keys and no values in clear: nothing to do',
    );
    expect((await keyEvents(id)).map((e) => `${e.type} ${e.reason}`)).toEqual([
      'keys.rotated previous_v1',
      'keys.reencryption_started pending_values_10;pending_subject_keys_0',
      'keys.reencrypted values_8;clear_2;subject_keys_0',
      'keys.version_retired min_decrypt_v2',
    ]);
  });

  it('names an unknown tenant', async () => {
    const result = await cli(['keys', 'status', '--tenant', 'nobody-here']);
    expect(result.status).toBe(1);
    expect(result.err).toContain('no tenant "nobody-here"');
  });

  it('refuses to run with a root key file readable by others', async () => {
    const keys = await open();
    await keys.service.close();
    const file = path.join(database.dataDir, 'root.key');
    fs.chmodSync(file, 0o644);
    try {
      const result = await cli(['keys', 'status']);
      expect(result.status).toBe(1);
      expect(result.err).toContain('keys.root_key_insecure');
      expect(result.err).toContain(file);
    } finally {
      fs.chmodSync(file, 0o600);
    }
  });
});

describe('the key store lives apart from the data', () => {
  it('a dump of the data database alone contains no wrapped key', async () => {
    const id = await setup('keys-apart');
    const keys = await open();
    const subject = await keys.service.subjectKey(id, newId(), { create: true });
    await keys.service.tenantIndexKey(id);
    // A value in the data database, encrypted under the subject key.
    const stored = encryptField(
      subject.key,
      subject,
      { tenantId: id, object: 'tenant', field: 'name', recordId: id },
      'x',
    );
    await database.handle.db
      .updateTable('tenants')
      .set({ name: stored })
      .where('id', '=', id)
      .execute();
    const wrapped = [
      ...(await keys.store.db.selectFrom('tenant_keys').select('wrapped').execute()),
      ...(await keys.store.db.selectFrom('subject_keys').select('wrapped').execute()),
    ]
      .map((r) => r.wrapped)
      .filter((w) => w !== null);
    expect(wrapped.length).toBeGreaterThanOrEqual(3);
    await keys.service.close();

    let dataDump: Buffer;
    let keyDump: Buffer;
    if (database.url === undefined) {
      const read = (file: string) =>
        Buffer.concat(
          [file, `${file}-wal`].filter((f) => fs.existsSync(f)).map((f) => fs.readFileSync(f)),
        );
      dataDump = read(path.join(database.dataDir, 'custos.db'));
      keyDump = read(path.join(database.dataDir, 'keys.db'));
    } else {
      const schemas = await database.handle.db
        .selectFrom('information_schema.tables' as never)
        .select(['table_schema' as never])
        .where('table_name' as never, '=', 'tenant_keys' as never)
        .execute();
      expect(schemas).toEqual([{ table_schema: 'custos_keys' }]);
      const dump = (...args: string[]) =>
        execFileSync('pg_dump', [...args, '--data-only', database.url!], { maxBuffer: 1 << 28 });
      dataDump = dump('--exclude-schema=custos_keys');
      keyDump = dump('--schema=custos_keys');
    }
    // The value is in the data; no wrapped key is.
    expect(dataDump.includes(Buffer.from(stored))).toBe(true);
    for (const w of wrapped) {
      expect(dataDump.includes(Buffer.from(w))).toBe(false);
      expect(keyDump.includes(Buffer.from(w))).toBe(true);
    }
  });
});

describeWithSoftHsm('PKCS#11 root key on SoftHSM2', () => {
  const hsm = {
    CUSTOS_KEY_PROVIDER: 'pkcs11',
    CUSTOS_PKCS11_LIBRARY: SOFTHSM_LIBRARY,
    CUSTOS_PKCS11_TOKEN_LABEL: 'custos-it',
    CUSTOS_PKCS11_PIN: '24681357',
    CUSTOS_PKCS11_KEY_LABEL: 'custos-root-it',
  };
  let token: { remove(): void } | undefined;
  let own: TestDatabase;
  // A database of its own: keys wrapped by the local provider above would (rightly) stop a
  // pkcs11-configured start.
  beforeAll(async () => {
    token = createSoftHsmToken({
      label: hsm.CUSTOS_PKCS11_TOKEN_LABEL,
      pin: hsm.CUSTOS_PKCS11_PIN,
    });
    own = await createTestDatabase();
  });
  beforeEach(() => {
    database = own;
  });
  afterAll(async () => {
    token?.remove();
    await own?.drop();
  });

  it('init-hsm creates the key once; tenant and subject keys work under it', async () => {
    // Without keys: setup would create them under the local provider, which (rightly) stops a
    // pkcs11-configured start.
    const existing = await bareTenant('keys-hsm');
    const created = await cli(['keys', 'init-hsm'], hsm);
    expect(created.out).toBe('Created PKCS#11 token "custos-it" key "custos-root-it".');
    expect((await cli(['keys', 'init-hsm'], hsm)).out).toContain('already exists');
    // The creation (not the second, idle run) is in every tenant's audit log.
    expect(await keyEvents(existing)).toEqual([
      {
        type: 'keys.root_key_created',
        actor: 'system:cli',
        target: 'root_key:pkcs11:custos-root-it',
        reason: null,
      },
    ]);

    const keys = await open(hsm);
    await assertKeysUsable(keys);
    const tenant = newId();
    const contact = newId();
    const subject = await keys.service.subjectKey(tenant, contact, { create: true });
    const row = await keys.store.db
      .selectFrom('tenant_keys')
      .select(['provider_id', 'provider_key_id'])
      .where('tenant_id', '=', tenant)
      .executeTakeFirstOrThrow();
    expect(row).toEqual({ provider_id: 'pkcs11:custos-it', provider_key_id: 'custos-root-it' });
    await keys.service.close();

    // Another process (fresh cache) unwraps through the token.
    const again = await open(hsm);
    await assertKeysUsable(again);
    const found = await again.service.subjectKey(tenant, contact, { create: false });
    expect(found.key.equals(subject.key)).toBe(true);
    await again.service.close();

    // A local root key cannot stand in for the token.
    const local = await open({
      CUSTOS_KEY_PROVIDER: 'env',
      CUSTOS_ROOT_KEY: Buffer.alloc(32, 1).toString('base64'),
    });
    await expect(assertKeysUsable(local)).rejects.toMatchObject({
      code: 'keys.provider_unavailable',
    });
    await local.service.close();
  });

  it('refuses to start without the key in the token', async () => {
    const error = await open({ ...hsm, CUSTOS_PKCS11_KEY_LABEL: 'absent' }).catch(
      (e: unknown) => e,
    );
    expect(error).toMatchObject({ code: 'keys.provider_unavailable' });
    expect((error as Error).message).toContain('init-hsm');
    expect((error as Error).message).not.toContain(hsm.CUSTOS_PKCS11_PIN);
  });
});
