import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { decryptFieldText, encryptField, parseEnvelope } from '../../core/crypto/index.ts';
import { newId } from '../../ids.ts';
import { createTestKeys } from '../../../test/helpers/key-store.ts';
import type { TestKeys } from '../../../test/helpers/key-store.ts';
import type { RewrapProgress } from './rotation.ts';

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
  field: 'notes',
  recordId,
});

/** A tenant with `n` contacts whose notes are encrypted under their subject keys. */
async function tenantWithSubjects(n: number) {
  const tenantId = newId();
  const service = keys.service();
  const values: { contactId: string; stored: string }[] = [];
  for (let i = 0; i < n; i += 1) {
    const contactId = newId();
    const key = await service.subjectKey(tenantId, contactId, { create: true });
    values.push({
      contactId,
      stored: encryptField(key.key, key, ad(tenantId, contactId), `n${i}`),
    });
  }
  return { tenantId, values };
}

async function versionsOf(tenantId: string) {
  const [status] = await keys.service().status(tenantId);
  return status?.versions.map((v) => [v.version, v.state, v.subjectKeys]);
}

describe('rotateTenantKey', () => {
  it('makes a new version active at once and keeps the old one for decryption', async () => {
    const tenantId = newId();
    const service = keys.service();
    const v1 = await service.tenantDataKey(tenantId);
    const stored = encryptField(v1.key, v1, ad(tenantId, 'r'), 'before rotation');
    expect(await service.rotateTenantKey(tenantId)).toEqual({ version: 2, previous: 1 });
    const v2 = await service.tenantDataKey(tenantId);
    expect(v2.keyVersion).toBe(2);
    expect(v2.key.equals(v1.key)).toBe(false);
    const key = await keys.service().keyFor(tenantId, parseEnvelope(stored));
    expect(decryptFieldText({ ...v1, key }, ad(tenantId, 'r'), stored)).toBe('before rotation');
    expect(await versionsOf(tenantId)).toEqual([
      [1, 'decrypt-only', 0],
      [2, 'active', 0],
    ]);
  });

  it('does not rotate the index key', async () => {
    const tenantId = newId();
    const service = keys.service();
    const index = await service.tenantIndexKey(tenantId);
    await service.rotateTenantKey(tenantId);
    expect((await keys.service().tenantIndexKey(tenantId)).equals(index)).toBe(true);
    expect((await service.status(tenantId))[0]?.indexVersion).toBe(1);
  });
});

describe('rewrapSubjectKeys', () => {
  it('re-wraps in batches, stops when killed mid-way, and resumes to completion', async () => {
    const { tenantId, values } = await tenantWithSubjects(25);
    await keys.service().rotateTenantKey(tenantId);
    expect(await versionsOf(tenantId)).toEqual([
      [1, 'decrypt-only', 25],
      [2, 'active', 0],
    ]);

    const kill = new AbortController();
    const seen: RewrapProgress[] = [];
    const first = await keys.service().rewrapSubjectKeys(tenantId, {
      batchSize: 10,
      pauseMs: 1,
      signal: kill.signal,
      onProgress: (p) => {
        seen.push(p);
        kill.abort();
      },
    });
    expect(first).toEqual({
      tenantId,
      targetVersion: 2,
      rewrapped: 10,
      remaining: 15,
      done: false,
    });
    expect(seen).toHaveLength(1);
    expect(await versionsOf(tenantId)).toEqual([
      [1, 'decrypt-only', 15],
      [2, 'active', 10],
    ]);

    // A new process picks up what is left.
    const progress: number[] = [];
    const rest = await keys.service().rewrapSubjectKeys(tenantId, {
      batchSize: 10,
      pauseMs: 1,
      onProgress: (p) => progress.push(p.remaining),
    });
    expect(rest).toMatchObject({ rewrapped: 15, remaining: 0, done: true });
    expect(progress).toEqual([5, 0]);
    expect(await versionsOf(tenantId)).toEqual([
      [1, 'decrypt-only', 0],
      [2, 'active', 25],
    ]);
    // Same subject keys, new wrapping: every value still decrypts, from a fresh process.
    const service = keys.service();
    for (const [i, { contactId, stored }] of values.entries()) {
      const key = await service.subjectKey(tenantId, contactId, { create: false });
      expect(decryptFieldText(key, ad(tenantId, contactId), stored)).toBe(`n${i}`);
    }
  });

  it('pauses between batches', async () => {
    const { tenantId } = await tenantWithSubjects(6);
    await keys.service().rotateTenantKey(tenantId);
    const started = performance.now();
    await keys.service().rewrapSubjectKeys(tenantId, { batchSize: 2, pauseMs: 40 });
    // Three batches, two pauses between them.
    expect(performance.now() - started).toBeGreaterThanOrEqual(75);
  });

  it('leaves a subject key destroyed during the job destroyed', async () => {
    const { tenantId, values } = await tenantWithSubjects(4);
    const service = keys.service();
    await service.rotateTenantKey(tenantId);
    await service.destroySubjectKey(tenantId, values[0]!.contactId);
    expect(await service.rewrapSubjectKeys(tenantId, { pauseMs: 0 })).toMatchObject({
      rewrapped: 3,
      done: true,
    });
    await expect(
      service.subjectKey(tenantId, values[0]!.contactId, { create: false }),
    ).rejects.toMatchObject({ code: 'keys.key_destroyed' });
    const [status] = await service.status(tenantId);
    expect(status?.destroyedSubjectKeys).toBe(1);
  });

  it('wraps new subject keys under the new version straight after rotation', async () => {
    const tenantId = newId();
    const service = keys.service();
    await service.tenantDataKey(tenantId);
    await service.rotateTenantKey(tenantId);
    await service.subjectKey(tenantId, newId(), { create: true });
    expect(await versionsOf(tenantId)).toEqual([
      [1, 'decrypt-only', 0],
      [2, 'active', 1],
    ]);
  });
});

describe('retireVersion', () => {
  it('is refused while the version is active or still wraps subject keys, accepted after', async () => {
    const { tenantId } = await tenantWithSubjects(3);
    const service = keys.service();
    await expect(service.retireVersion(tenantId, 1)).rejects.toMatchObject({
      code: 'keys.version_in_use',
    });
    await service.rotateTenantKey(tenantId);
    keys.clock.advance(60_000);
    await expect(service.retireVersion(tenantId, 1)).rejects.toMatchObject({
      code: 'keys.version_in_use',
      detail: expect.stringContaining('3 subject keys'),
    });
    await service.rewrapSubjectKeys(tenantId, { pauseMs: 0 });
    expect(await service.retireVersion(tenantId, 1)).toEqual({ minDecryptVersion: 2 });

    const [status] = await keys.service().status(tenantId);
    expect(status).toMatchObject({ activeVersion: 2, minDecryptVersion: 2 });
    expect(await versionsOf(tenantId)).toEqual([
      [1, 'retired', 0],
      [2, 'active', 3],
    ]);
    const row = await keys.store.db
      .selectFrom('tenant_keys')
      .select('wrapped')
      .where('tenant_id', '=', tenantId)
      .where('version', '=', 1)
      .executeTakeFirstOrThrow();
    expect(row.wrapped).toBeNull();
    for (const s of [service, keys.service()]) {
      await expect(s.tenantDataKeyVersion(tenantId, 1)).rejects.toMatchObject({
        code: 'keys.version_retired',
      });
    }
  });

  it('waits until other processes can have seen the rotation', async () => {
    const tenantId = newId();
    const service = keys.service();
    await service.tenantDataKey(tenantId);
    await service.rotateTenantKey(tenantId);
    await expect(service.retireVersion(tenantId, 1)).rejects.toMatchObject({
      code: 'keys.version_in_use',
      detail: expect.stringContaining('rotated out less than'),
    });
    keys.clock.advance(10_001);
    await expect(service.retireVersion(tenantId, 1)).resolves.toEqual({ minDecryptVersion: 2 });
  });

  it('asks the record layer how many values a version still protects', async () => {
    const tenantId = newId();
    let values = 2;
    const service = keys.service({ protectedValues: () => Promise.resolve(values) });
    await service.tenantDataKey(tenantId);
    await service.rotateTenantKey(tenantId);
    keys.clock.advance(60_000);
    await expect(service.retireVersion(tenantId, 1)).rejects.toMatchObject({
      code: 'keys.version_in_use',
      detail: expect.stringContaining('2 values'),
    });
    values = 0;
    await expect(service.retireVersion(tenantId, 1)).resolves.toEqual({ minDecryptVersion: 2 });
  });

  it('another process stops decrypting with a retired version within the refresh interval', async () => {
    const tenantId = newId();
    const elsewhere = keys.service({ activeVersionTtlMs: 1000 });
    await elsewhere.tenantDataKey(tenantId);
    await elsewhere.rotateTenantKey(tenantId);
    keys.clock.advance(60_000);
    await elsewhere.tenantDataKeyVersion(tenantId, 1);
    await keys.service().retireVersion(tenantId, 1);
    // Its cached key and minimum version are trusted for at most the refresh interval.
    await expect(elsewhere.tenantDataKeyVersion(tenantId, 1)).resolves.toMatchObject({
      keyVersion: 1,
    });
    keys.clock.advance(1001);
    await expect(elsewhere.tenantDataKeyVersion(tenantId, 1)).rejects.toMatchObject({
      code: 'keys.version_retired',
    });
  });

  it('refuses an unknown version with keys.not_found', async () => {
    const tenantId = newId();
    await keys.service().tenantDataKey(tenantId);
    await expect(keys.service().retireVersion(tenantId, 9)).rejects.toMatchObject({
      code: 'keys.not_found',
    });
  });
});
