import type { KeyObject } from 'node:crypto';
import {
  DEFAULT_BLIND_INDEX_BITS,
  blindIndex,
  decryptFieldText,
  deriveBlindIndexKey,
  deriveEqualityHashKey,
  encryptField,
  equalityHash,
  isCryptoError,
  keyRefId,
  parseEnvelope,
} from '../../core/crypto/index.ts';
import type { FieldKey, FieldKeyRef } from '../../core/crypto/index.ts';
import { isProtected } from '../../core/privacy/index.ts';
import { AppError } from '../../errors.ts';
import type { KeyService } from '../keys/service.ts';
import { SUBJECT_KEY_VERSION, keyDestroyed, subjectKeyId } from '../keys/subject-keys.ts';
import { newId } from '../../ids.ts';
import { keyNotFound } from '../keys/tenant-keys.ts';
import type { BlindIndexSpec, RecordSpec } from './spec.ts';

/**
 * Encryption at rest for one record type, driven by the data map: every field the map classes
 * `personal` or `sensitive` is sealed on write (`encryptField`, AD = tenant, object, field,
 * record id) and opened on read; nothing is decided per call site. The key is the record's data
 * subject's (`spec.subjectOf`) or else the tenant data key; blind-index columns are computed
 * here too, because they need the tenant's index key.
 *
 * Cost: one AEAD call per protected field (the envelope format binds each value to its field,
 * so a value moved to another column fails). Keys are `KeyObject`s from the key service's LRU
 * cache; the per-field index keys (HKDF) are derived once per tenant and kept here.
 */
type Row = Record<string, unknown>;

export interface FieldCryptoDeps {
  keys: KeyService;
  /** Bits of the truncated blind indexes (default 32). Tests use a tiny one to force collisions. */
  indexBits?: number | undefined;
}

interface IndexKeys {
  index: KeyObject;
  unique: KeyObject | undefined;
}

/** At most this many tenants' derived index keys are kept (then the map starts afresh). */
const MAX_TENANTS = 1000;
/**
 * New data subjects' keys are created this many at a time, one key-store transaction each: the
 * key store commits durably (an fsync, ~8 ms here), which one per contact would cost every
 * create. Reserved ids whose keys were never used are harmless (a key protecting nothing).
 */
const SUBJECT_POOL = 64;
const LONE_SURROGATE = /\p{Surrogate}/u;

export type FieldCrypto = ReturnType<typeof createFieldCrypto>;

export function createFieldCrypto(spec: RecordSpec, deps: FieldCryptoDeps) {
  const { keys } = deps;
  const bits = deps.indexBits ?? DEFAULT_BLIND_INDEX_BITS;
  const object = spec.object;
  const fields = Object.keys(spec.fields).filter((f) => isProtected(object, f as never));
  const protectedSet = new Set(fields);
  const columns = fields.map((f) => [f, spec.fields[f] as string] as const);
  const indexes = Object.entries(spec.blindIndexes ?? {});
  for (const [field] of indexes) {
    if (!protectedSet.has(field))
      throw new TypeError(`${object}.${field} is indexed, not protected`);
  }
  const derived = new Map<string, Promise<Map<string, IndexKeys>>>();

  function indexKeys(tenantId: string): Promise<Map<string, IndexKeys>> {
    let found = derived.get(tenantId);
    if (found === undefined) {
      found = keys.tenantIndexKey(tenantId).then((root) => {
        const out = new Map<string, IndexKeys>();
        for (const [field, ix] of indexes) {
          const scope = { tenantId, object, field };
          out.set(field, {
            index: deriveBlindIndexKey(root, scope),
            unique: ix.uniqueColumn === undefined ? undefined : deriveEqualityHashKey(root, scope),
          });
        }
        return out;
      });
      found.catch(() => derived.delete(tenantId));
      if (derived.size >= MAX_TENANTS) derived.clear();
      derived.set(tenantId, found);
    }
    return found;
  }

  /** The data subject whose key seals a record, or null for the tenant key. */
  function subjectFor(id: string, record: Row): string | null {
    if (spec.isSubject === true) return id;
    return spec.subjectOf?.(id, record) ?? null;
  }

  /** A stored row's clear (unprotected) columns under their API names, for `subjectOf`. */
  function apiView(row: Row): Row {
    if (spec.subjectOf === undefined) return row;
    const out: Row = {};
    for (const [field, column] of Object.entries(spec.fields)) out[field] = row[column];
    return out;
  }

  /** The key new values of this record are sealed with. */
  function writeKey(tenantId: string, id: string, record: Row): Promise<FieldKey> {
    const subject = subjectFor(id, record);
    return subject === null
      ? keys.tenantDataKey(tenantId)
      : keys.subjectKey(tenantId, subject, { create: true });
  }

  /** Replaces the protected fields among `values` with envelopes under `key` (synchronous). */
  function sealWith(key: FieldKey, tenantId: string, id: string, values: Row): Row {
    const out: Row = { ...values };
    for (const field of fields) {
      const value = values[field];
      if (value === undefined || value === null) continue;
      if (typeof value !== 'string') throw new TypeError(`${object}.${field} must be a string`);
      out[field] = encryptField(key.key, key, { tenantId, object, field, recordId: id }, value);
    }
    return out;
  }

  /** Index columns for the indexed fields present in `values` (null when not indexable). */
  function indexColumnsWith(ixKeys: Map<string, IndexKeys>, values: Row): Row {
    const out: Row = {};
    for (const [field, ix] of indexes) {
      if (!(field in values)) continue;
      const k = ixKeys.get(field) as IndexKeys;
      const value = values[field];
      const normal = typeof value === 'string' ? ix.normalize(value) : null;
      out[ix.column] = normal === null ? null : blindIndex(k.index, normal, { bits });
      if (ix.uniqueColumn !== undefined) {
        out[ix.uniqueColumn] =
          normal === null || k.unique === undefined ? null : equalityHash(k.unique, normal);
      }
    }
    return out;
  }

  function hasProtected(values: Row): boolean {
    return fields.some((f) => values[f] !== undefined && values[f] !== null);
  }

  /**
   * Seals `values` (API fields of record `id`; `record` is the whole record after the write,
   * which decides the key). Returns the sealed fields and the index columns to store.
   */
  async function seal(
    tenantId: string,
    id: string,
    values: Row,
    record: Row = values,
    key?: FieldKey,
  ): Promise<{ values: Row; indexColumns: Row }> {
    const sealed = hasProtected(values)
      ? sealWith(key ?? (await writeKey(tenantId, id, record)), tenantId, id, values)
      : values;
    const indexed = indexes.length > 0 && indexes.some(([f]) => f in values);
    const indexColumns = indexed ? indexColumnsWith(await indexKeys(tenantId), values) : {};
    return { values: sealed, indexColumns };
  }

  /** Does a change of `before` into `after` move the record to another key (re-seal all)? */
  function keyChanges(id: string, before: Row, after: Row): boolean {
    if (spec.subjectOf === undefined || fields.length === 0) return false;
    return subjectFor(id, before) !== subjectFor(id, after);
  }

  function failure(err: unknown, field: string, recordId: string): unknown {
    const where = `${object}.${field} of ${object} ${recordId}`;
    if (isCryptoError(err, 'DECRYPT_FAILED')) {
      return new AppError(
        'internal',
        'resource.integrity_failed',
        `${where}: stored value failed authentication (tampered, copied from another record or field, or sealed under another key)`,
        {
          detail: 'A stored value failed its integrity check and was not returned.',
          cause: err,
        },
      );
    }
    if (isCryptoError(err, 'ENVELOPE_MALFORMED') || isCryptoError(err, 'ENVELOPE_VERSION')) {
      return new AppError(
        'internal',
        'resource.value_malformed',
        `${where}: stored value is not a readable envelope (${err.message})`,
        {
          detail: 'A stored value is damaged (truncated or not encrypted) and was not returned.',
          cause: err,
        },
      );
    }
    if (err instanceof AppError && err.code === 'keys.not_found') {
      return new AppError(
        'internal',
        'resource.key_unknown',
        `${where}: the key named by the stored value does not exist in the key store`,
        {
          detail: 'A stored value names a key that does not exist and was not returned.',
          cause: err,
        },
      );
    }
    return err;
  }

  /** Loads every key the given references name: one query for many subjects. */
  async function loadKeys(
    tenantId: string,
    refs: Map<string, FieldKeyRef>,
  ): Promise<Map<string, KeyObject | Error>> {
    const out = new Map<string, KeyObject | Error>();
    const subjects: string[] = [];
    for (const [id, ref] of refs) {
      if (ref.keyId.startsWith('subject:') && refs.size > 1) {
        subjects.push(ref.keyId.slice('subject:'.length));
        continue;
      }
      try {
        out.set(id, await keys.keyFor(tenantId, ref));
      } catch (err) {
        if (!(err instanceof AppError)) throw err;
        out.set(id, err);
      }
    }
    if (subjects.length > 0) {
      const found = await keys.subjectKeys(tenantId, subjects);
      for (const [id, ref] of refs) {
        if (!ref.keyId.startsWith('subject:') || out.has(id)) continue;
        const key = found.get(ref.keyId.slice('subject:'.length));
        if (key === undefined || (key !== 'destroyed' && ref.keyVersion !== key.keyVersion)) {
          out.set(id, keyNotFound('subject key'));
        } else if (key === 'destroyed') {
          out.set(id, keyDestroyed());
        } else {
          out.set(id, key.key);
        }
      }
    }
    return out;
  }

  /**
   * Opens the protected columns of stored rows of the tenant (in place of the envelopes).
   * Refuses a value that fails authentication or names an unknown or destroyed key with a
   * stable code (see `failure`); never returns a partly decrypted record.
   */
  async function open<R extends Row>(tenantId: string, rows: readonly R[]): Promise<R[]> {
    if (columns.length === 0 || rows.length === 0) return [...rows];
    // The key a row is expected under (its subject's) is loaded up front, for many rows with one
    // query; a value under another key (the tenant's, an older version) is looked up on a miss.
    const expected = new Map<string, FieldKeyRef>();
    for (const row of rows) {
      const subject = subjectFor(String(row.id), apiView(row));
      if (subject === null) continue;
      const ref = { keyId: subjectKeyId(subject), keyVersion: SUBJECT_KEY_VERSION };
      expected.set(keyRefId(ref), ref);
    }
    const loaded = await loadKeys(tenantId, expected);
    const resolver = (ref: FieldKeyRef) => {
      const key = loaded.get(keyRefId(ref));
      return key instanceof Error ? undefined : key;
    };
    const out: R[] = [];
    for (const row of rows) {
      const copy: Row = { ...row };
      const recordId = String(row.id);
      for (const [field, column] of columns) {
        const stored = row[column];
        if (stored === undefined || stored === null) continue;
        if (typeof stored !== 'string') {
          throw new AppError(
            'internal',
            'resource.value_malformed',
            `${object}.${field} is not text`,
          );
        }
        const ad = { tenantId, object, field, recordId };
        try {
          copy[column] = decryptFieldText(resolver, ad, stored);
          continue;
        } catch (err) {
          if (!isCryptoError(err, 'KEY_NOT_FOUND')) throw failure(err, field, recordId);
        }
        // Not under an expected key: load the one the value names (a known failure is kept).
        const ref = parseEnvelope(stored);
        const id = keyRefId(ref);
        if (!loaded.has(id)) {
          const more = await loadKeys(tenantId, new Map([[id, ref]]));
          loaded.set(id, more.get(id) as KeyObject | Error);
        }
        const key = loaded.get(id);
        if (key instanceof Error) throw failure(key, field, recordId);
        try {
          copy[column] = decryptFieldText(resolver, ad, stored);
        } catch (err) {
          throw failure(err, field, recordId);
        }
      }
      out.push(copy as R);
    }
    return out;
  }

  /**
   * An exact filter on a protected field: the blind-index column and value to query, and the
   * normal form candidates must have after decryption; null if the value can never match.
   */
  async function indexFilter(
    tenantId: string,
    field: string,
    raw: string,
  ): Promise<{ column: string; value: string; confirm: (row: Row) => boolean } | null> {
    const ix = spec.blindIndexes?.[field];
    if (ix === undefined) throw new TypeError(`${object}.${field} has no blind index`);
    // Stored values are well-formed text (the schemas refuse lone surrogates): such a query
    // value can never match, and the HMAC would refuse to encode it.
    if (LONE_SURROGATE.test(raw)) return null;
    const normal = ix.normalize(raw);
    if (normal === null) return null;
    const k = (await indexKeys(tenantId)).get(field) as IndexKeys;
    const column = spec.fields[field] as string;
    return {
      column: ix.column,
      value: blindIndex(k.index, normal, { bits }),
      confirm: (row) => {
        const plain = row[column];
        return typeof plain === 'string' && ix.normalize(plain) === normal;
      },
    };
  }

  /** The unique keyed hash of a value of an indexed field (exact; for duplicate checks). */
  async function uniqueHash(tenantId: string, field: string, raw: string): Promise<string | null> {
    const ix: BlindIndexSpec | undefined = spec.blindIndexes?.[field];
    const normal = ix?.normalize(raw) ?? null;
    if (normal === null) return null;
    const k = (await indexKeys(tenantId)).get(field)?.unique;
    if (k === undefined) throw new TypeError(`${object}.${field} has no unique hash`);
    return equalityHash(k, normal);
  }

  const pools = new Map<
    string,
    { ready: { id: string; key: FieldKey }[]; refill?: Promise<void> }
  >();

  /**
   * A fresh record id with its subject's key already in the key store (for `spec.isSubject`
   * objects): taken from a per-tenant pool refilled in batches.
   */
  async function newSubject(tenantId: string): Promise<{ id: string; key: FieldKey }> {
    let pool = pools.get(tenantId);
    if (pool === undefined) {
      if (pools.size >= MAX_TENANTS) pools.clear();
      pool = { ready: [] };
      pools.set(tenantId, pool);
    }
    for (;;) {
      const next = pool.ready.shift();
      if (next !== undefined) return next;
      const p = pool;
      p.refill ??= (async () => {
        try {
          const ids = Array.from({ length: SUBJECT_POOL }, () => newId());
          const made = await keys.createSubjectKeys(tenantId, ids, { cache: true });
          for (const id of ids) {
            const key = made.get(id);
            if (key !== undefined) p.ready.push({ id, key });
          }
        } finally {
          p.refill = undefined;
        }
      })();
      await p.refill;
    }
  }

  return {
    /** API names of the protected fields. */
    fields,
    seal,
    sealWith,
    indexKeys,
    indexColumnsWith,
    keyChanges,
    open,
    indexFilter,
    uniqueHash,
    writeKey,
    newSubject,
  };
}
