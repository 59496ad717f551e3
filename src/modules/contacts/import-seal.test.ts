import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestKeys } from '../../../test/helpers/key-store.ts';
import type { TestKeys } from '../../../test/helpers/key-store.ts';
import { newId } from '../../ids.ts';
import { AppError } from '../../errors.ts';
import {
  createFieldCrypto,
  type FieldCrypto,
  type TenantIndexing,
} from '../records/field-crypto.ts';
import type { IndexContext } from '../records/spec.ts';
import type { KeyService } from '../keys/service.ts';
import {
  SEAL_INDEX_COLUMNS,
  SUBJECT_KEY_BYTES,
  createNormalCache,
  sealBatch,
  type SealBatchInput,
  type SealBatchKeys,
  type SealedBatch,
} from './import-seal.ts';
import { createImportSealer } from './import-sealer.ts';
import { contactSpec } from './spec.ts';

let keys: TestKeys;
let service: KeyService;
let crypto: FieldCrypto;

beforeAll(async () => {
  keys = await createTestKeys();
  service = keys.service();
  crypto = createFieldCrypto(contactSpec, { keys: service });
});
afterAll(async () => keys?.close());

const PEOPLE: Record<string, string>[] = [
  { email: 'Ada@Example.com', phone: '+1 415 555 0100', notes: 'first, "quoted"' },
  { email: 'alan@example.com', phone: '+1 415 555 0100', nationalId: '123-45-6789' },
  { phone: 'not a phone', dateOfBirth: '1970-01-01', address: 'Zürich 8001' },
  { email: 'grace@example.com' },
];

/** The tenant's index keys with a given phone region (as `indexKeys` reads it in a write). */
async function indexingIn(tenantId: string, context: IndexContext): Promise<TenantIndexing> {
  const { keys: index } = await crypto.indexKeys(tenantId, null, {});
  return { keys: index, context };
}

async function sealKeys(tenantId: string, context: IndexContext = { phoneRegion: null }) {
  const wrapping = await service.subjectKeyWrapping(tenantId);
  const batchKeys: SealBatchKeys = {
    tenantId,
    wrapping: { key: wrapping.key, wrappingId: wrapping.wrappingId },
    index: (await indexingIn(tenantId, context)).keys,
    context,
    bits: crypto.indexBits,
  };
  return { wrapping, batchKeys };
}

function input(ids: string[]): SealBatchInput {
  return {
    ids,
    fields: crypto.fields,
    values: PEOPLE.flatMap((p) => crypto.fields.map((f) => p[f] ?? null)),
  };
}

/** The batch's values as stored columns of each row, for `crypto.open`. */
function rowsOf(ids: string[], sealed: SealedBatch) {
  const width = crypto.fields.length;
  return ids.map((id, row) => {
    const out: Record<string, unknown> = { id };
    crypto.fields.forEach((f, i) => {
      out[contactSpec.fields[f] as string] = sealed.sealed[row * width + i];
    });
    return out;
  });
}

/** Stores the batch's subject keys, wrapped as `wrapping` says (by default, as of now). */
async function store(
  tenantId: string,
  ids: string[],
  sealed: SealedBatch,
  wrapping?: Awaited<ReturnType<typeof sealKeys>>['wrapping'],
) {
  wrapping ??= (await sealKeys(tenantId)).wrapping;
  await service.storeSubjectKeys(
    tenantId,
    wrapping,
    ids.map((subjectId, row) => ({
      subjectId,
      key: sealed.keys.subarray(row * SUBJECT_KEY_BYTES, (row + 1) * SUBJECT_KEY_BYTES),
      wrapped: sealed.wrapped[row] as string,
    })),
  );
}

describe('sealing a batch of new contacts', () => {
  it('seals what FieldCrypto opens, under each contact’s own key, with its index columns', async () => {
    const tenantId = newId();
    const ids = PEOPLE.map(() => newId());
    const { batchKeys } = await sealKeys(tenantId);
    const sealed = sealBatch(batchKeys, input(ids));
    await store(tenantId, ids, sealed);
    const opened = await crypto.open(tenantId, rowsOf(ids, sealed));
    const ixKeys = await indexingIn(tenantId, { phoneRegion: null });
    PEOPLE.forEach((person, row) => {
      const id = ids[row] as string;
      for (const f of crypto.fields) {
        expect(opened[row]?.[contactSpec.fields[f] as string]).toBe(person[f] ?? null);
        const stored = sealed.sealed[row * crypto.fields.length + crypto.fields.indexOf(f)];
        if (person[f] === undefined) expect(stored).toBeNull();
        else expect(stored).toMatch(/^cv2\./);
      }
      // The same index columns as the record service computes (absent field: null).
      const expected = crypto.indexColumnsWith(ixKeys, person);
      SEAL_INDEX_COLUMNS.forEach((column, i) => {
        expect(sealed.index[row * SEAL_INDEX_COLUMNS.length + i]).toBe(expected[column] ?? null);
      });
      if (person.email !== undefined) expect(sealed.sealed.join()).not.toContain(person.email);
      expect(sealed.wrapped[row]).not.toContain(id);
    });
    // The key store holds each contact's key: a read through the service opens its values.
    const again = createFieldCrypto(contactSpec, { keys: keys.service() });
    expect(await again.open(tenantId, rowsOf(ids, sealed))).toEqual(opened);
  });

  it('indexes national phone numbers in the batch’s region, normal forms kept per region', async () => {
    const tenantId = newId();
    const ids = ['(415) 555-2671', '415.555.2671', '+1 415 555 2671'].map(() => newId());
    const values = ['(415) 555-2671', '415.555.2671', '+1 415 555 2671'].flatMap((phone) =>
      crypto.fields.map((f) => (f === 'phone' ? phone : null)),
    );
    const batch = { ids, fields: crypto.fields, values };
    const us = { phoneRegion: 'US' } as const;
    const none = { phoneRegion: null };
    const cache = createNormalCache();
    const phoneAt = SEAL_INDEX_COLUMNS.indexOf('phone_bidx');
    const phones = (sealed: SealedBatch) =>
      ids.map((_, row) => sealed.index[row * SEAL_INDEX_COLUMNS.length + phoneAt]);
    // One cache for both regions, as the thread keeps it for an import whose region changes.
    const inUs = phones(sealBatch((await sealKeys(tenantId, us)).batchKeys, batch, cache));
    const inNone = phones(sealBatch((await sealKeys(tenantId, none)).batchKeys, batch, cache));
    const expected = crypto.indexColumnsWith(await indexingIn(tenantId, us), {
      phone: '+14155552671',
    }).phone_bidx;
    expect(expected).toEqual(expect.any(String));
    expect(inUs).toEqual([expected, expected, expected]);
    // Without a region only the international number is read.
    expect(inNone).toEqual([null, null, expected]);
    expect(phones(sealBatch((await sealKeys(tenantId, us)).batchKeys, batch, cache))).toEqual(inUs);
  });

  it('binds every value to its contact: values copied to another contact fail to open', async () => {
    const tenantId = newId();
    const ids = PEOPLE.map(() => newId());
    const { batchKeys } = await sealKeys(tenantId);
    const sealed = sealBatch(batchKeys, input(ids));
    await store(tenantId, ids, sealed);
    const [ada, alan] = rowsOf(ids, sealed);
    const swapped = { ...ada, id: alan!.id };
    const refused = await crypto.open(tenantId, [swapped]).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(AppError);
    expect((refused as AppError).code).toBe('resource.integrity_failed');
  });

  it('gives every contact a fresh key: no two wrapped keys or key bytes repeat', async () => {
    const tenantId = newId();
    const ids = PEOPLE.map(() => newId());
    const { batchKeys } = await sealKeys(tenantId);
    const sealed = sealBatch(batchKeys, input(ids));
    const keyHex = ids.map((_, row) =>
      Buffer.from(
        sealed.keys.subarray(row * SUBJECT_KEY_BYTES, (row + 1) * SUBJECT_KEY_BYTES),
      ).toString('hex'),
    );
    expect(new Set(keyHex).size).toBe(ids.length);
    expect(new Set(sealed.wrapped).size).toBe(ids.length);
    expect(keyHex).not.toContain('00'.repeat(SUBJECT_KEY_BYTES));
  });

  it('seals the same way on the import’s crypto thread', async () => {
    const tenantId = newId();
    const ids = PEOPLE.map(() => newId());
    const { batchKeys } = await sealKeys(tenantId);
    const sealer = createImportSealer({ thread: 'always' });
    try {
      const sealed = await sealer.seal(batchKeys, input(ids));
      await store(tenantId, ids, sealed);
      const opened = await crypto.open(tenantId, rowsOf(ids, sealed));
      expect(opened.map((r) => r.email)).toEqual(PEOPLE.map((p) => p.email ?? null));
      expect(sealed.index).toEqual(sealBatch(batchKeys, input(ids)).index);
      // A failure on the thread comes back as a rejection, not a crash or a hang.
      await expect(
        sealer.seal(batchKeys, { ids, fields: crypto.fields, values: [] }),
      ).rejects.toThrow(/values must hold/);
    } finally {
      await sealer.close();
    }
  });
});

describe('storing subject keys made by the caller', () => {
  it('refuses a subject that already has a key, and stores none of the batch', async () => {
    const tenantId = newId();
    const ids = PEOPLE.map(() => newId());
    await service.subjectKey(tenantId, ids[1] as string, { create: true });
    const { batchKeys } = await sealKeys(tenantId);
    const sealed = sealBatch(batchKeys, input(ids));
    await expect(store(tenantId, ids, sealed)).rejects.toThrow(/already has a key/);
    const stored = await keys.store.db
      .selectFrom('subject_keys')
      .select('subject_id')
      .where('tenant_id', '=', tenantId)
      .execute();
    expect(stored.map((r) => r.subject_id)).toEqual([ids[1]]);
  });

  it('wraps the keys again under the new version when the tenant key rotated meanwhile', async () => {
    const tenantId = newId();
    const ids = PEOPLE.map(() => newId());
    const { wrapping, batchKeys } = await sealKeys(tenantId);
    const sealed = sealBatch(batchKeys, input(ids));
    expect(wrapping.version).toBe(1);
    await service.rotateTenantKey(tenantId);
    await store(tenantId, ids, sealed, wrapping);
    const versions = await keys.store.db
      .selectFrom('subject_keys')
      .select('tenant_key_version')
      .where('tenant_id', '=', tenantId)
      .execute();
    expect(versions.map((v) => v.tenant_key_version)).toEqual(ids.map(() => 2));
    // Version 1 can be retired: nothing is wrapped under it, and the values still open.
    const fresh = createFieldCrypto(contactSpec, { keys: keys.service() });
    const opened = await fresh.open(tenantId, rowsOf(ids, sealed));
    expect(opened.map((r) => r.phone)).toEqual(PEOPLE.map((p) => p.phone ?? null));
  });
});
