import { createSecretKey, randomFillSync } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { encryptGroup } from '../../core/crypto/aead-group.ts';
import { blindIndex, equalityHash } from '../../core/crypto/blind-index.ts';
import { wrapAd, wrapKey } from '../../core/crypto/key-wrap.ts';
import { SUBJECT_KEY_VERSION, subjectKeyId } from '../keys/subject-key-ref.ts';
import type { IndexContext } from '../records/spec.ts';
import { contactSpec } from './spec.ts';

/**
 * The crypto of a batch of new contacts of an import, as one pure function: it runs on the
 * import's crypto thread (import-sealer.ts), or inline. Per contact:
 *
 * - a fresh subject key (the batch's key bytes come from one CSPRNG call), wrapped under the
 *   tenant data key as the key service wraps it (`wrapAd.subjectKey`, the wrapping key id);
 * - its protected fields sealed as one group under that key, as `FieldCrypto.sealWith` seals
 *   them (same envelope, key reference and associated data);
 * - its blind-index and equality-hash columns, as `FieldCrypto.indexColumnsWith` computes them.
 *   A normal form is computed once per distinct value of the import (`NormalCache`): parsing and
 *   validating a phone number costs ~10 us, as much as sealing the whole contact. A regional
 *   field's (the phone's) normal forms are kept per phone region: the batch's `context`.
 *
 * import-seal.test.ts checks the results against FieldCrypto. Imports only small crypto modules:
 * the thread loads this file and nothing of the database or the HTTP layer.
 */

/** The keys a batch is sealed with (KeyObjects cross to the thread by `postMessage`). */
export interface SealBatchKeys {
  tenantId: string;
  /** The tenant data key version new subject keys are wrapped under (`SubjectKeyWrapping`). */
  wrapping: { key: KeyObject; wrappingId: string };
  /** Per indexed field, its derived index and equality-hash keys (`FieldCrypto.indexKeys`). */
  index: Map<string, { index: KeyObject; unique: KeyObject | undefined }>;
  /**
   * The tenant's phone region the regional indexes are computed in, as read before the batch's
   * transaction: the writer compares it with the region its transaction reads (and locks), and
   * computes the regional columns again when they differ.
   */
  context: IndexContext;
  /** Bits of the truncated blind indexes (`FieldCrypto.indexBits`). */
  bits: number;
}

export interface SealBatchInput {
  /** The new contacts' ids (bound into the sealed values and the wrapped keys). */
  ids: string[];
  /** The protected fields (API names, `FieldCrypto.fields`): the columns of `values`. */
  fields: string[];
  /** `fields.length` clear values per contact, contact after contact; null when absent. */
  values: (string | null)[];
}

export interface SealedBatch {
  /** The sealed values, laid out as the input's `values` (null stays null). */
  sealed: (string | null)[];
  /** `SEAL_INDEX_COLUMNS.length` index columns per contact, contact after contact. */
  index: (string | null)[];
  /** Per contact, its subject key wrapped (base64), to store in the key store. */
  wrapped: string[];
  /**
   * The subject keys' bytes, 32 per contact, kept only to wrap them again should the tenant key
   * rotate before they are stored; zero them once stored.
   */
  keys: Uint8Array;
}

export const SUBJECT_KEY_BYTES = 32;

/**
 * Normal forms already computed, per indexed field (per field and phone region for a regional
 * one, see `cacheKey`): one import's (the thread's life, or the
 * inline sealer's), never kept past it. Bounded: started afresh past `MAX_NORMAL_FORMS` values.
 */
export type NormalCache = Map<string, Map<string, string | null>>;
const MAX_NORMAL_FORMS = 50_000;

export function createNormalCache(): NormalCache {
  return new Map();
}

const INDEXES = Object.entries(contactSpec.blindIndexes ?? {});

/** Where a field's normal forms are kept: a regional field's under the region too. */
function cacheKey(field: string, regional: boolean, context: IndexContext): string {
  return regional ? `${field}\u0000${context.phoneRegion ?? ''}` : field;
}

/** The index columns `sealBatch` computes, in the order of `SealedBatch.index`. */
export const SEAL_INDEX_COLUMNS: readonly string[] = INDEXES.flatMap(([, ix]) =>
  ix.uniqueColumn === undefined ? [ix.column] : [ix.column, ix.uniqueColumn],
);

export function sealBatch(
  keys: SealBatchKeys,
  input: SealBatchInput,
  cache: NormalCache = createNormalCache(),
): SealedBatch {
  const { tenantId, wrapping, bits, context } = keys;
  const { ids, fields, values } = input;
  const width = fields.length;
  if (values.length !== ids.length * width) {
    throw new TypeError('values must hold fields.length values per id');
  }
  const indexed = INDEXES.map(([field, ix]) => {
    const at = fields.indexOf(field);
    const k = keys.index.get(field);
    if (at < 0 || k === undefined) throw new TypeError(`contact.${field} is indexed, not sealed`);
    const kept = cacheKey(field, ix.regional === true, context);
    let normal = cache.get(kept);
    if (normal === undefined || normal.size > MAX_NORMAL_FORMS) {
      normal = new Map<string, string | null>();
      cache.set(kept, normal);
    }
    return { at, ix, k, normal };
  });
  const columns = SEAL_INDEX_COLUMNS.length;
  const bytes = new Uint8Array(SUBJECT_KEY_BYTES * ids.length);
  randomFillSync(bytes);
  const sealed = new Array<string | null>(values.length).fill(null);
  const index = new Array<string | null>(ids.length * columns).fill(null);
  const wrapped = new Array<string>(ids.length);
  const group: [string, string][] = [];
  const slots: number[] = [];
  for (let row = 0; row < ids.length; row++) {
    const id = ids[row] as string;
    const key = bytes.subarray(row * SUBJECT_KEY_BYTES, (row + 1) * SUBJECT_KEY_BYTES);
    wrapped[row] = wrapKey(
      wrapping.key,
      wrapping.wrappingId,
      key,
      wrapAd.subjectKey(tenantId, id),
    ).toString('base64');
    const base = row * width;
    group.length = 0;
    slots.length = 0;
    for (let f = 0; f < width; f++) {
      const value = values[base + f];
      if (value === null || value === undefined) continue;
      group.push([fields[f] as string, value]);
      slots.push(base + f);
    }
    if (group.length > 0) {
      const out = encryptGroup(
        createSecretKey(key),
        { keyId: subjectKeyId(id), keyVersion: SUBJECT_KEY_VERSION },
        { tenantId, object: contactSpec.object, recordId: id },
        group,
      );
      for (let i = 0; i < out.length; i++) sealed[slots[i] as number] = out[i] as string;
    }
    let column = row * columns;
    for (const { at, ix, k, normal } of indexed) {
      const value = values[base + at];
      let normalized: string | null = null;
      if (typeof value === 'string') {
        const known = normal.get(value);
        normalized = known === undefined ? ix.normalize(value, context) : known;
        if (known === undefined) normal.set(value, normalized);
      }
      index[column++] = normalized === null ? null : blindIndex(k.index, normalized, { bits });
      if (ix.uniqueColumn !== undefined) {
        index[column++] =
          normalized === null || k.unique === undefined ? null : equalityHash(k.unique, normalized);
      }
    }
  }
  return { sealed, index, wrapped, keys: bytes };
}
