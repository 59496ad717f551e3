import fs from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  decryptFieldText,
  deriveBlindIndexKey,
  blindIndex,
  encryptField,
  parseEnvelope,
} from '../../core/crypto/index.ts';
import { newId } from '../../ids.ts';
import { createTestKeys } from '../../../test/helpers/key-store.ts';
import type { TestKeys } from '../../../test/helpers/key-store.ts';

let keys: TestKeys;
beforeEach(async () => {
  keys = await createTestKeys();
});
afterEach(async () => {
  await keys.close();
});

const ad = (tenantId: string, recordId: string) => ({
  tenantId,
  object: 'contact',
  field: 'email',
  recordId,
});

async function storedSubjectWrapped(tenantId: string, subjectId: string) {
  return keys.store.db
    .selectFrom('subject_keys')
    .select(['wrapped', 'destroyed_at', 'tenant_key_version'])
    .where('tenant_id', '=', tenantId)
    .where('subject_id', '=', subjectId)
    .executeTakeFirst();
}

describe('tenant keys', () => {
  it('creates data key version 1 on first use and returns the same key afterwards', async () => {
    const tenantId = newId();
    const service = keys.service();
    const first = await service.tenantDataKey(tenantId);
    expect(first).toMatchObject({ keyId: `tenant:${tenantId}`, keyVersion: 1 });
    expect((await service.tenantDataKey(tenantId)).key).toBe(first.key);
    // Another process (empty cache) unwraps the same key from the store.
    const stored = encryptField(first.key, first, ad(tenantId, 'r1'), 'a@example.com');
    const other = keys.service();
    const again = await other.keyFor(tenantId, parseEnvelope(stored));
    expect(decryptFieldText({ ...first, key: again }, ad(tenantId, 'r1'), stored)).toBe(
      'a@example.com',
    );
    const rows = await keys.store.db
      .selectFrom('tenant_keys')
      .select(['purpose', 'version', 'state', 'provider_id'])
      .where('tenant_id', '=', tenantId)
      .execute();
    expect(rows).toEqual([{ purpose: 'data', version: 1, state: 'active', provider_id: 'local' }]);
  });

  it('gives each tenant its own data key', async () => {
    const service = keys.service();
    const a = await service.tenantDataKey(newId());
    const b = await service.tenantDataKey(newId());
    expect(a.key.equals(b.key)).toBe(false);
  });

  it('keeps a separate index key that blind indexes derive from', async () => {
    const tenantId = newId();
    const service = keys.service();
    const index = await service.tenantIndexKey(tenantId);
    const data = await service.tenantDataKey(tenantId);
    expect(index.equals(data.key)).toBe(false);
    const fieldKey = deriveBlindIndexKey(index, { tenantId, object: 'contact', field: 'email' });
    const fromOtherNode = deriveBlindIndexKey(await keys.service().tenantIndexKey(tenantId), {
      tenantId,
      object: 'contact',
      field: 'email',
    });
    expect(blindIndex(fieldKey, 'a@example.com')).toBe(blindIndex(fromOtherNode, 'a@example.com'));
  });

  it('refuses a wrapped index key swapped into the data key row', async () => {
    const tenantId = newId();
    await keys.service().tenantIndexKey(tenantId);
    await keys.service().tenantDataKey(tenantId);
    const index = await keys.store.db
      .selectFrom('tenant_keys')
      .select('wrapped')
      .where('tenant_id', '=', tenantId)
      .where('purpose', '=', 'index')
      .executeTakeFirstOrThrow();
    await keys.store.db
      .updateTable('tenant_keys')
      .set({ wrapped: index.wrapped })
      .where('tenant_id', '=', tenantId)
      .where('purpose', '=', 'data')
      .execute();
    await expect(keys.service().tenantDataKey(tenantId)).rejects.toMatchObject({
      code: 'keys.root_key_mismatch',
    });
  });

  it("refuses another tenant's key reference and unknown versions with keys.not_found", async () => {
    const service = keys.service();
    const a = newId();
    const b = newId();
    await service.tenantDataKey(b);
    await expect(service.keyFor(a, { keyId: `tenant:${b}`, keyVersion: 1 })).rejects.toMatchObject({
      code: 'keys.not_found',
    });
    await expect(service.tenantDataKeyVersion(b, 7)).rejects.toMatchObject({
      code: 'keys.not_found',
    });
    await expect(service.keyFor(b, { keyId: 'other:x', keyVersion: 1 })).rejects.toMatchObject({
      code: 'keys.not_found',
    });
  });
});

describe('subject keys', () => {
  it('creates a subject key only when asked, then finds it from any process', async () => {
    const tenantId = newId();
    const contactId = newId();
    const service = keys.service();
    await expect(service.subjectKey(tenantId, contactId, { create: false })).rejects.toMatchObject({
      code: 'keys.not_found',
    });
    const created = await service.subjectKey(tenantId, contactId, { create: true });
    expect(created).toMatchObject({ keyId: `subject:${contactId}`, keyVersion: 1 });
    const stored = encryptField(created.key, created, ad(tenantId, contactId), 'secret notes');
    const other = keys.service();
    const found = await other.subjectKey(tenantId, contactId, { create: false });
    expect(decryptFieldText(found, ad(tenantId, contactId), stored)).toBe('secret notes');
    expect(await other.keyFor(tenantId, parseEnvelope(stored))).toBe(found.key);
    expect((await storedSubjectWrapped(tenantId, contactId))?.tenant_key_version).toBe(1);
  });

  it('two processes creating the same subject key at once end with one key', async () => {
    const tenantId = newId();
    const contactId = newId();
    const [a, b] = await Promise.all([
      keys.service().subjectKey(tenantId, contactId, { create: true }),
      keys.service().subjectKey(tenantId, contactId, { create: true }),
    ]);
    expect(a.key.equals(b.key)).toBe(true);
  });

  it('hands out a cached subject key without I/O, and none once it is destroyed', async () => {
    const tenantId = newId();
    const contactId = newId();
    const service = keys.service();
    // Nothing before the key is loaded or created: the method never loads.
    expect(service.cachedSubjectKey(tenantId, contactId)).toBeUndefined();
    const { key } = await service.subjectKey(tenantId, contactId, { create: true });
    expect(service.cachedSubjectKey(tenantId, contactId)).toBe(key);
    // Another tenant's subject of the same id is another cache entry.
    expect(service.cachedSubjectKey(newId(), contactId)).toBeUndefined();
    await service.destroySubjectKey(tenantId, contactId);
    expect(service.cachedSubjectKey(tenantId, contactId)).toBeUndefined();
    await expect(service.subjectKey(tenantId, contactId, { create: false })).rejects.toMatchObject({
      code: 'keys.key_destroyed',
    });
    expect(service.cachedSubjectKey(tenantId, contactId)).toBeUndefined();
  });

  it('destroying a subject key makes it unrecoverable: KEY_DESTROYED, wrapped bytes gone', async () => {
    const tenantId = newId();
    const contactId = newId();
    const service = keys.service();
    const key = await service.subjectKey(tenantId, contactId, { create: true });
    const stored = encryptField(key.key, key, ad(tenantId, contactId), '1985-02-03');
    const wrapped = (await storedSubjectWrapped(tenantId, contactId))!.wrapped!;
    expect(wrapped.length).toBeGreaterThan(40);

    expect(await service.destroySubjectKey(tenantId, contactId)).toEqual({ destroyed: true });
    const row = await storedSubjectWrapped(tenantId, contactId);
    expect(row?.wrapped).toBeNull();
    expect(row?.destroyed_at).toBe(keys.clock.now().toISOString());
    for (const attempt of [
      () => service.subjectKey(tenantId, contactId, { create: false }),
      () => service.subjectKey(tenantId, contactId, { create: true }),
      () => service.keyFor(tenantId, parseEnvelope(stored)),
      () => keys.service().subjectKey(tenantId, contactId, { create: false }),
    ]) {
      await expect(attempt()).rejects.toMatchObject({ code: 'keys.key_destroyed' });
    }
    expect(await service.destroySubjectKey(tenantId, contactId)).toEqual({ destroyed: false });

    if (keys.store.file !== undefined) {
      // The raw key store files: neither the main file nor the WAL keeps the old bytes.
      for (const file of [keys.store.file, `${keys.store.file}-wal`]) {
        if (!fs.existsSync(file)) continue;
        expect(fs.readFileSync(file).includes(Buffer.from(wrapped))).toBe(false);
      }
    }
  });

  it('the raw keys.db holds a live wrapped subject key (so the shredding check can fail)', async () => {
    if (keys.store.file === undefined) return;
    const tenantId = newId();
    const contactId = newId();
    await keys.service().subjectKey(tenantId, contactId, { create: true });
    const wrapped = (await storedSubjectWrapped(tenantId, contactId))!.wrapped!;
    const bytes = Buffer.concat(
      [keys.store.file, `${keys.store.file}-wal`]
        .filter((f) => fs.existsSync(f))
        .map((f) => fs.readFileSync(f)),
    );
    expect(bytes.includes(Buffer.from(wrapped))).toBe(true);
  });

  it('erasing a subject that never had a key prevents one being created later', async () => {
    const tenantId = newId();
    const contactId = newId();
    const service = keys.service();
    expect(await service.destroySubjectKey(tenantId, contactId)).toEqual({ destroyed: false });
    await expect(service.subjectKey(tenantId, contactId, { create: true })).rejects.toMatchObject({
      code: 'keys.key_destroyed',
    });
  });

  it('keeps subject keys of one tenant out of reach of another', async () => {
    const a = newId();
    const b = newId();
    const contactId = newId();
    const service = keys.service();
    await service.subjectKey(a, contactId, { create: true });
    await expect(service.subjectKey(b, contactId, { create: false })).rejects.toMatchObject({
      code: 'keys.not_found',
    });
  });
});

describe('ping', () => {
  it('answers when the store and the root key provider work', async () => {
    await expect(keys.service().ping()).resolves.toBeUndefined();
  });

  it('reports keys.provider_unavailable when the provider fails', async () => {
    const down = () => Promise.reject(new Error('token removed'));
    const service = keys.service({
      root: { provider: { id: 'local', wrap: down, unwrap: down }, keyId: 'root' },
    });
    await expect(service.ping()).rejects.toMatchObject({
      code: 'keys.provider_unavailable',
      message: expect.stringContaining('token removed'),
    });
  });
});

describe('subjectKeys', () => {
  it('loads many subject keys at once, marking destroyed ones and leaving out unknown ones', async () => {
    const tenantId = newId();
    const writer = keys.service();
    const [a, b, gone, unknown] = [newId(), newId(), newId(), newId()];
    const keyA = await writer.subjectKey(tenantId, a, { create: true });
    const keyB = await writer.subjectKey(tenantId, b, { create: true });
    await writer.subjectKey(tenantId, gone, { create: true });
    await writer.destroySubjectKey(tenantId, gone);

    const reader = keys.service();
    const found = await reader.subjectKeys(tenantId, [a, b, gone, unknown, a]);
    expect([...found.keys()].sort()).toEqual([a, b, gone].sort());
    expect(found.get(gone)).toBe('destroyed');
    const loadedA = found.get(a);
    expect(loadedA !== 'destroyed' && loadedA?.key.equals(keyA.key)).toBe(true);
    expect(found.get(b)).toMatchObject({ keyId: `subject:${b}`, keyVersion: 1 });
    const loadedB = found.get(b);
    expect(loadedB !== 'destroyed' && loadedB?.key.equals(keyB.key)).toBe(true);
    // Now cached: the single lookup returns the same object.
    expect((await reader.subjectKey(tenantId, a, { create: false })).key).toBe(
      (loadedA as { key: unknown }).key,
    );
    // Another tenant sees none of them.
    expect((await reader.subjectKeys(newId(), [a, b, gone])).size).toBe(0);
  });
});
