import type { KeyObject } from 'node:crypto';
import type { Kysely } from 'kysely';
import {
  DEFAULT_BLIND_INDEX_BITS,
  GROUP_ENVELOPE_PREFIX,
  blindIndex,
  decryptFieldText,
  decryptGroupText,
  deriveBlindIndexKey,
  deriveEqualityHashKey,
  encryptGroup,
  equalityHash,
  isCryptoError,
  keyRefId,
  parseEnvelope,
} from '../../core/crypto/index.ts';
import type {
  FieldAd,
  FieldKey,
  FieldKeyRef,
  FieldKeyResolver,
  GroupAd,
} from '../../core/crypto/index.ts';
import { isProtected } from '../../core/privacy/index.ts';
import { AppError } from '../../errors.ts';
import type { KeyService } from '../keys/service.ts';
import { SUBJECT_KEY_VERSION, keyDestroyed, subjectKeyId } from '../keys/subject-keys.ts';
import { newId } from '../../ids.ts';
import { keyNotFound } from '../keys/tenant-keys.ts';
import type { Database } from '../../db/schema.ts';
import { readPhoneRegion } from '../tenant-settings/phone-region.ts';
import type { BlindIndexSpec, IndexContext, SealedSpec } from './spec.ts';

/**
 * Encryption at rest for one record type, driven by the data map: every field the map classes
 * `personal` or `sensitive` is sealed on write and opened on read; nothing is decided per call
 * site. The key is the record's data subject's (`spec.subjectOf`) or else the tenant data key;
 * blind-index columns are computed here too, because they need the tenant's index key (and, for
 * a regional index such as the phone's, the tenant's phone region: see `indexKeys`).
 *
 * Format: the protected fields of a record are sealed together, ONE AES-GCM call per record
 * (`encryptGroup`, format `cv2.`; AD = tenant, object, record id and every field's name and
 * length), each value still in its own column. A value moved to another column or record, a
 * missing or an altered one fails the whole record. Writing any protected field re-seals all of
 * them, so `seal` needs the whole record after the write. Values of the older one-call-per-field
 * format (`cv1.`, `encryptField`) are still read, field by field, and become a group at the
 * record's next write. Why groups: `bench:crypto` measured 5.5-6.4x fewer microseconds per field
 * than one call per field, and an import of contacts spent most of its time in those calls.
 *
 * Keys are `KeyObject`s from the key service's LRU cache; the per-field index keys (HKDF) are
 * derived once per tenant and kept here.
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

/** A tenant's index keys per field, and what the normal forms depend on (`indexKeys`). */
export interface TenantIndexing {
  keys: Map<string, IndexKeys>;
  /** Undefined when it was not read (no regional field among the values it was read for). */
  context: IndexContext | undefined;
}

const NO_CONTEXT: IndexContext = { phoneRegion: null };

/** At most this many tenants' derived index keys are kept (then the map starts afresh). */
const MAX_TENANTS = 1000;
/**
 * New data subjects' keys are created in batches, one key-store transaction each: the key store
 * commits durably (an fsync, ~8 ms here, far more on a busy disk), which one per contact would
 * cost every create. A tenant's batch starts small and doubles at each refill up to the maximum,
 * so a tenant creating contacts one by one pays the fsync once per 256 creates while a quiet one
 * reserves few. Reserved ids whose keys were never used are harmless (a key protecting nothing).
 */
const SUBJECT_POOL_FIRST = 16;
const SUBJECT_POOL_MAX = 256;
const LONE_SURROGATE = /\p{Surrogate}/u;
/** A stored value names a key that `open` has not loaded yet. */
const NEED_KEY = Symbol('need key');

/** The keys `open` starts with (see `expectedKeys`). */
interface ExpectedKeys {
  loaded: Map<string, KeyObject | Error>;
  only: FieldKey | undefined;
}

export type FieldCrypto = ReturnType<typeof createFieldCrypto>;

export function createFieldCrypto(spec: SealedSpec, deps: FieldCryptoDeps) {
  const { keys } = deps;
  const bits = deps.indexBits ?? DEFAULT_BLIND_INDEX_BITS;
  const object = spec.object;
  const fields = Object.keys(spec.fields).filter((f) => isProtected(object, f as never));
  const protectedSet = new Set(fields);
  // In field-name order, the order a record group is sealed in: `open` then hands each group
  // over already sorted, and decrypting it neither sorts a copy nor maps the parts back.
  const columns = fields
    .map((f) => [f, spec.fields[f] as string] as const)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const indexes = Object.entries(spec.blindIndexes ?? {});
  for (const [field] of indexes) {
    if (!protectedSet.has(field))
      throw new TypeError(`${object}.${field} is indexed, not protected`);
  }
  const regionalFields = indexes.filter(([, ix]) => ix.regional === true).map(([f]) => f);
  const derived = new Map<string, Promise<Map<string, IndexKeys>>>();

  function derivedKeys(tenantId: string): Promise<Map<string, IndexKeys>> {
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

  /**
   * What index columns and filter values of the tenant are computed with: the derived keys, and
   * the tenant's phone region when an index is regional, read in `conn`. A write of index
   * columns reads it in its own transaction: the region then cannot change before it commits
   * (a change waits, then re-indexes what is committed; see tenant-settings/phone-region.ts).
   * Given the `values` the columns will be computed for, the region is read only when a regional
   * field is among them (no query, no lock, for a write of the e-mail alone).
   */
  async function indexKeys(
    tenantId: string,
    conn: Kysely<Database> | null,
    values?: Row,
  ): Promise<TenantIndexing> {
    const needed = regionalFields.some((f) => values === undefined || f in values);
    const context = needed ? { phoneRegion: await regionFor(conn, tenantId) } : undefined;
    return { keys: await derivedKeys(tenantId), context };
  }

  /** The tenant's phone region, read through `conn` (null: a record type with no regional index). */
  function regionFor(conn: Kysely<Database> | null, tenantId: string) {
    if (conn === null) throw new TypeError(`${object} has a regional index: pass a connection`);
    return readPhoneRegion(conn, tenantId);
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

  /**
   * Replaces the protected fields among `values` with one group of envelopes under `key`
   * (synchronous). `values` must hold every protected value of the record (the group is the
   * record's): a protected field left out is no longer readable once this group is stored.
   */
  function sealWith(key: FieldKey, tenantId: string, id: string, values: Row): Row {
    const out: Row = { ...values };
    const group: [string, string][] = [];
    for (const field of fields) {
      const value = values[field];
      if (value === undefined || value === null) continue;
      if (typeof value !== 'string') throw new TypeError(`${object}.${field} must be a string`);
      group.push([field, value]);
    }
    if (group.length === 0) return out;
    const sealed = encryptGroup(key.key, key, { tenantId, object, recordId: id }, group);
    group.forEach(([field], i) => (out[field] = sealed[i]));
    return out;
  }

  /** Index columns for the indexed fields present in `values` (null when not indexable). */
  function indexColumnsWith(indexing: TenantIndexing, values: Row): Row {
    const out: Row = {};
    for (const [field, ix] of indexes) {
      if (!(field in values)) continue;
      const k = indexing.keys.get(field) as IndexKeys;
      const context = indexing.context ?? NO_CONTEXT;
      if (ix.regional === true && indexing.context === undefined) {
        throw new TypeError(`${object}.${field} is regional: read indexKeys for these values`);
      }
      const value = values[field];
      const normal = typeof value === 'string' ? ix.normalize(value, context) : null;
      out[ix.column] = normal === null ? null : blindIndex(k.index, normal, { bits });
      if (ix.uniqueColumn !== undefined) {
        out[ix.uniqueColumn] =
          normal === null || k.unique === undefined ? null : equalityHash(k.unique, normal);
      }
    }
    return out;
  }

  /** Does a write of `values` touch a protected field (set or cleared)? */
  function touchesProtected(values: Row): boolean {
    return fields.some((f) => values[f] !== undefined);
  }

  /** Does a write of `values` change an index column (so it needs `indexKeys`)? */
  function touchesIndex(values: Row): boolean {
    return indexes.some(([f]) => f in values);
  }

  /**
   * Seals `values` (API fields of record `id`; `record` is the whole record after the write,
   * which decides the key). When `values` sets or clears any protected field, every protected
   * field of `record` is sealed again as one group and returned (null for the absent ones), so
   * store them all. The index columns of `values` are the caller's to add (`indexColumnsWith`,
   * inside the write's transaction).
   */
  async function seal(
    tenantId: string,
    id: string,
    values: Row,
    record: Row = values,
    key?: FieldKey,
  ): Promise<{ values: Row }> {
    if (!touchesProtected(values)) return { values };
    const whole: Row = { ...values };
    for (const f of fields) whole[f] = values[f] !== undefined ? values[f] : (record[f] ?? null);
    const sealed = sealWith(key ?? (await writeKey(tenantId, id, record)), tenantId, id, whole);
    return { values: sealed };
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
   * The keys the rows are expected under (their subjects'), by `keyRefId`: synchronously when
   * this process holds them all (the usual read: no query, no promise), else loaded with one
   * query for many subjects. `only`: the one key, when all rows expect the same cached key.
   */
  function expectedKeys(
    tenantId: string,
    rows: readonly Row[],
  ): ExpectedKeys | Promise<ExpectedKeys> {
    const expected = new Map<string, FieldKeyRef>();
    const cached = new Map<string, KeyObject | Error>();
    let only: FieldKey | undefined;
    let missing = false;
    for (const row of rows) {
      const subject = subjectFor(String(row.id), apiView(row));
      if (subject === null) continue;
      const ref = { keyId: subjectKeyId(subject), keyVersion: SUBJECT_KEY_VERSION };
      const id = keyRefId(ref);
      if (expected.has(id)) continue;
      expected.set(id, ref);
      const key = missing ? undefined : keys.cachedSubjectKey(tenantId, subject);
      if (key === undefined) missing = true;
      else {
        cached.set(id, key);
        only = cached.size === 1 ? { key, ...ref } : undefined;
      }
    }
    if (!missing) return { loaded: cached, only };
    return loadKeys(tenantId, expected).then((loaded) => ({ loaded, only: undefined }));
  }

  /** Opens a record group with the keys loaded; NEED_KEY (unless `last`) for a key not loaded. */
  function openGroupWith(
    keysFor: FieldKeyResolver | FieldKey,
    ad: GroupAd,
    group: [string, string][],
    last: true,
  ): string[];
  function openGroupWith(
    keysFor: FieldKeyResolver | FieldKey,
    ad: GroupAd,
    group: [string, string][],
    last: false,
  ): string[] | typeof NEED_KEY;
  function openGroupWith(
    keysFor: FieldKeyResolver | FieldKey,
    ad: GroupAd,
    group: [string, string][],
    last: boolean,
  ): string[] | typeof NEED_KEY {
    try {
      return decryptGroupText(keysFor, ad, group);
    } catch (err) {
      if (!last && isCryptoError(err, 'KEY_NOT_FOUND')) return NEED_KEY;
      throw failure(err, group.map(([field]) => field).join('+'), ad.recordId);
    }
  }

  /** Opens a value of the one-call-per-field format, as `openGroupWith`. */
  function openFieldWith(
    keysFor: FieldKeyResolver | FieldKey,
    ad: FieldAd,
    stored: string,
    last: true,
  ): string;
  function openFieldWith(
    keysFor: FieldKeyResolver | FieldKey,
    ad: FieldAd,
    stored: string,
    last: false,
  ): string | typeof NEED_KEY;
  function openFieldWith(
    keysFor: FieldKeyResolver | FieldKey,
    ad: FieldAd,
    stored: string,
    last: boolean,
  ): string | typeof NEED_KEY {
    try {
      return decryptFieldText(keysFor, ad, stored);
    } catch (err) {
      if (!last && isCryptoError(err, 'KEY_NOT_FOUND')) return NEED_KEY;
      throw failure(err, ad.field, ad.recordId);
    }
  }

  /** Loads the key `stored` names into `loaded` (a known failure is kept, and thrown). */
  async function loadNamedKey(
    tenantId: string,
    loaded: Map<string, KeyObject | Error>,
    stored: string,
    what: string,
    recordId: string,
  ): Promise<void> {
    const ref = parseEnvelope(stored);
    const id = keyRefId(ref);
    if (!loaded.has(id)) {
      const more = await loadKeys(tenantId, new Map([[id, ref]]));
      loaded.set(id, more.get(id) as KeyObject | Error);
    }
    const key = loaded.get(id);
    if (key instanceof Error) throw failure(key, what, recordId);
  }

  /** A `FieldKeyResolver` over the keys loaded (an anonymous function, not named per call: see `open`). */
  function resolverOver(loaded: Map<string, KeyObject | Error>): FieldKeyResolver {
    return (ref) => {
      const key = loaded.get(keyRefId(ref));
      return key instanceof Error ? undefined : key;
    };
  }

  /**
   * Opens the protected columns of stored rows of the tenant (in place of the envelopes).
   * Refuses a value that fails authentication or names an unknown or destroyed key with a
   * stable code (see `failure`); never returns a partly decrypted record. No function is
   * declared in here: the TypeScript loader names every function created at run time (`__name`,
   * an `Object.defineProperty`), which profiles showed on every read when this declared its
   * helpers per call.
   */
  async function open<R extends Row>(tenantId: string, rows: readonly R[]): Promise<R[]> {
    if (columns.length === 0 || rows.length === 0) return [...rows];
    // The key a row is expected under (its subject's) is looked up front, for many rows with one
    // query; a value under another key (the tenant's, an older version) is looked up on a miss.
    const expected = expectedKeys(tenantId, rows);
    const { loaded, only } = expected instanceof Promise ? await expected : expected;
    // The one expected key as a `FieldKey` (compared, not looked up); any other key through the
    // map, once a value names it.
    const resolver = resolverOver(loaded);
    const keysFor = only ?? resolver;
    const out: R[] = [];
    for (const row of rows) {
      const copy: Row = { ...row };
      const recordId = String(row.id);
      const group: [string, string][] = [];
      const groupColumns: string[] = [];
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
        if (stored.startsWith(GROUP_ENVELOPE_PREFIX)) {
          group.push([field, stored]);
          groupColumns.push(column);
          continue;
        }
        // A value of the one-call-per-field format (written before record groups).
        const ad = { tenantId, object, field, recordId };
        const plain = openFieldWith(keysFor, ad, stored, false);
        if (plain !== NEED_KEY) copy[column] = plain;
        else {
          await loadNamedKey(tenantId, loaded, stored, field, recordId);
          copy[column] = openFieldWith(resolver, ad, stored, true);
        }
      }
      if (group.length > 0) {
        const ad = { tenantId, object, recordId };
        let plain = openGroupWith(keysFor, ad, group, false);
        if (plain === NEED_KEY) {
          const what = group.map(([field]) => field).join('+');
          await loadNamedKey(tenantId, loaded, group[0]![1], what, recordId);
          plain = openGroupWith(resolver, ad, group, true);
        }
        for (let i = 0; i < groupColumns.length; i++) copy[groupColumns[i]!] = plain[i];
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
    conn: Kysely<Database> | null,
    tenantId: string,
    field: string,
    raw: string,
  ): Promise<{ column: string; value: string; confirm: (row: Row) => boolean } | null> {
    const ix = spec.blindIndexes?.[field];
    if (ix === undefined) throw new TypeError(`${object}.${field} has no blind index`);
    // Stored values are well-formed text (the schemas refuse lone surrogates): such a query
    // value can never match, and the HMAC would refuse to encode it.
    if (LONE_SURROGATE.test(raw)) return null;
    // The value is read as the index was written: a national number in the tenant's region.
    const context =
      ix.regional === true ? { phoneRegion: await regionFor(conn, tenantId) } : NO_CONTEXT;
    const normal = ix.normalize(raw, context);
    if (normal === null) return null;
    const k = (await derivedKeys(tenantId)).get(field) as IndexKeys;
    const column = spec.fields[field] as string;
    return {
      column: ix.column,
      value: blindIndex(k.index, normal, { bits }),
      confirm: (row) => {
        const plain = row[column];
        return typeof plain === 'string' && ix.normalize(plain, context) === normal;
      },
    };
  }

  /** The unique keyed hash of a value of an indexed field (exact; for duplicate checks). */
  async function uniqueHash(tenantId: string, field: string, raw: string): Promise<string | null> {
    const ix: BlindIndexSpec | undefined = spec.blindIndexes?.[field];
    if (ix?.regional === true) throw new TypeError(`${object}.${field} is regional, not unique`);
    const normal = ix?.normalize(raw, NO_CONTEXT) ?? null;
    if (normal === null) return null;
    const k = (await derivedKeys(tenantId)).get(field)?.unique;
    if (k === undefined) throw new TypeError(`${object}.${field} has no unique hash`);
    return equalityHash(k, normal);
  }

  const pools = new Map<
    string,
    { ready: { id: string; key: FieldKey }[]; batch: number; refill?: Promise<void> }
  >();

  /**
   * A fresh record id with its subject's key already in the key store (for `spec.isSubject`
   * objects): taken from a per-tenant pool refilled in batches.
   */
  async function newSubject(tenantId: string): Promise<{ id: string; key: FieldKey }> {
    let pool = pools.get(tenantId);
    if (pool === undefined) {
      if (pools.size >= MAX_TENANTS) pools.clear();
      pool = { ready: [], batch: SUBJECT_POOL_FIRST };
      pools.set(tenantId, pool);
    }
    for (;;) {
      const next = pool.ready.shift();
      if (next !== undefined) return next;
      const p = pool;
      p.refill ??= (async () => {
        try {
          const ids = Array.from({ length: p.batch }, () => newId());
          p.batch = Math.min(SUBJECT_POOL_MAX, p.batch * 2);
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
    /** Bits of the truncated blind indexes (for code computing them off this object). */
    indexBits: bits,
    seal,
    sealWith,
    touchesIndex,
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
