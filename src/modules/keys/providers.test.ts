import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createManualClock } from '../../clock.ts';
import { loadConfig } from '../../config.ts';
import { newId } from '../../ids.ts';
import { createTestDatabase } from '../../../test/helpers/database.ts';
import type { TestDatabase } from '../../../test/helpers/database.ts';
import { assertKeysUsable, openKeys } from './open.ts';
import type { OpenedKeys } from './open.ts';

let database: TestDatabase;
const opened: OpenedKeys[] = [];
const clock = createManualClock();

beforeEach(async () => {
  database = await createTestDatabase();
});
afterEach(async () => {
  for (const keys of opened.splice(0)) await keys.service.close().catch(() => undefined);
  await database.drop();
});

function configFor(env: Record<string, string> = {}) {
  return loadConfig({
    CUSTOS_DATA_DIR: database.dataDir,
    ...(database.url === undefined ? {} : { CUSTOS_DATABASE_URL: database.url }),
    ...env,
  });
}

async function open(env: Record<string, string> = {}): Promise<OpenedKeys> {
  const keys = await openKeys(configFor(env), { clock });
  opened.push(keys);
  return keys;
}

async function codeOf(promise: Promise<unknown>): Promise<string | undefined> {
  try {
    await promise;
  } catch (err) {
    return (err as { code?: string }).code;
  }
  return undefined;
}

const keyFile = () => path.join(database.dataDir, 'root.key');

describe('file provider', () => {
  it('creates a 32-byte root key file with mode 0600 at the first start', async () => {
    fs.rmSync(database.dataDir, { recursive: true, force: true });
    const keys = await open();
    expect(keys.root.created).toBe(true);
    expect(keys.root.provider.id).toBe('local');
    const stat = fs.statSync(keyFile());
    expect(stat.mode & 0o777).toBe(0o600);
    expect(stat.size).toBe(32);
    expect(fs.statSync(database.dataDir).mode & 0o777).toBe(0o700);
  });

  it('uses the same root key at the next start', async () => {
    const first = await open();
    const tenantId = newId();
    const key = await first.service.tenantDataKey(tenantId);
    await first.service.close();
    opened.length = 0;
    const second = await open();
    expect(second.root.created).toBe(false);
    await assertKeysUsable(second);
    expect((await second.service.tenantDataKey(tenantId)).key.equals(key.key)).toBe(true);
  });

  it('refuses a key file readable or writable by others, naming the file and the fix', async () => {
    await (await open()).service.close();
    opened.length = 0;
    for (const mode of [0o644, 0o640, 0o604, 0o620]) {
      fs.chmodSync(keyFile(), mode);
      const error = await openKeys(configFor(), { clock }).catch((e: unknown) => e);
      expect(error).toMatchObject({ code: 'keys.root_key_insecure' });
      expect((error as Error).message).toContain(keyFile());
      expect((error as Error).message).toContain('chmod 600');
    }
  });

  it('refuses a key file of the wrong size', async () => {
    fs.writeFileSync(keyFile(), randomBytes(16), { mode: 0o600 });
    expect(await codeOf(open())).toBe('keys.root_key_invalid');
  });

  it('refuses to start when the key file is missing but wrapped tenant keys exist', async () => {
    const first = await open();
    await first.service.tenantDataKey(newId());
    await first.service.close();
    opened.length = 0;
    fs.rmSync(keyFile());
    const error = await openKeys(configFor(), { clock }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'keys.root_key_missing' });
    expect((error as Error).message).toContain(keyFile());
    // And it did not quietly make a new one.
    expect(fs.existsSync(keyFile())).toBe(false);
  });

  it('refuses a key file in a directory other users can write', async () => {
    const dir = path.join(database.dataDir, 'shared');
    fs.mkdirSync(dir, { mode: 0o777 });
    fs.chmodSync(dir, 0o777);
    const code = await codeOf(open({ CUSTOS_KEY_FILE: path.join(dir, 'root.key') }));
    expect(code).toBe('keys.root_key_insecure');
  });
});

describe('env provider', () => {
  it('wraps with CUSTOS_ROOT_KEY and interoperates with the same key as a file', async () => {
    const rootKey = randomBytes(32);
    const env = { CUSTOS_KEY_PROVIDER: 'env', CUSTOS_ROOT_KEY: rootKey.toString('base64') };
    const fromEnv = await open(env);
    expect(fromEnv.root.describe).not.toContain(rootKey.toString('base64'));
    const tenantId = newId();
    const key = await fromEnv.service.tenantDataKey(tenantId);
    await fromEnv.service.close();
    opened.length = 0;
    // The same bytes moved to a key file open the same tenant key.
    fs.writeFileSync(keyFile(), rootKey, { mode: 0o600 });
    const fromFile = await open();
    await assertKeysUsable(fromFile);
    expect((await fromFile.service.tenantDataKey(tenantId)).key.equals(key.key)).toBe(true);
  });
});

describe('assertKeysUsable', () => {
  it('passes on an empty key store', async () => {
    await expect(assertKeysUsable(await open())).resolves.toBeUndefined();
  });

  it('detects a wrong root key before any request fails', async () => {
    const first = await open();
    await first.service.tenantDataKey(newId());
    await first.service.close();
    opened.length = 0;
    const wrong = randomBytes(32).toString('base64');
    const keys = await open({ CUSTOS_KEY_PROVIDER: 'env', CUSTOS_ROOT_KEY: wrong });
    const error = await assertKeysUsable(keys).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'keys.root_key_mismatch' });
    expect((error as Error).message).toContain('CUSTOS_ROOT_KEY');
    expect((error as Error).message).not.toContain(wrong);
  });

  it('detects a key file replaced by another key', async () => {
    const first = await open();
    await first.service.tenantIndexKey(newId());
    await first.service.close();
    opened.length = 0;
    fs.writeFileSync(keyFile(), randomBytes(32));
    expect(await codeOf(assertKeysUsable(await open()))).toBe('keys.root_key_mismatch');
  });

  it('detects keys wrapped by another provider', async () => {
    const first = await open();
    await first.service.tenantDataKey(newId());
    await first.store.db.updateTable('tenant_keys').set({ provider_id: 'pkcs11:other' }).execute();
    expect(await codeOf(assertKeysUsable(first))).toBe('keys.provider_unavailable');
  });
});
