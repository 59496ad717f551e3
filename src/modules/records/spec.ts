import type { CountryCode } from '../../core/crypto/index.ts';
import type { RecordTableName, SealedTableName } from '../../db/schema.ts';
import type { RecordResource } from '../../core/policy/index.ts';
import type { DataObject } from '../../core/privacy/index.ts';
import type { ErrorCode } from '../../errors.ts';

/**
 * An exact-match filter: on a clear column (with the normalisation applied to the query value),
 * or on the blind index of a protected field (`blindIndex` names the API field; candidates are
 * confirmed after decryption).
 */
export type FilterSpec =
  | {
      column: string;
      /** Returns null when the value can never match (e.g. not a phone number). */
      normalize?: (value: string) => string | null;
    }
  | { blindIndex: string };

/** What a normal form may depend on beyond the value: the tenant's settings. */
export interface IndexContext {
  /** Region national phone numbers are read in (tenant setting); null: international only. */
  phoneRegion: CountryCode | null;
}

/**
 * A keyed index over a protected field (which is stored encrypted): HMAC-SHA256 under a key
 * derived per tenant and field, over the normalised value.
 */
export interface BlindIndexSpec {
  /** Column of the truncated blind index: collides by design, backs exact filters. */
  column: string;
  /** The normal form that is indexed; null means "not indexable" (no index value stored). */
  normalize: (value: string, context: IndexContext) => string | null;
  /**
   * The normal form depends on the tenant's phone region: the index is written under the lock
   * of tenant-settings/phone-region.ts and rebuilt when the region changes.
   */
  regional?: boolean;
  /**
   * Column of the untruncated keyed hash (another derived key) that carries a unique
   * constraint. A truncated index cannot: two different values may share it.
   */
  uniqueColumn?: string;
}

export interface SortSpec {
  column: string;
  /** Sort nulls as this value (last for ascending order), so keyset pagination stays total. */
  nullsAs?: string;
}

/**
 * Declares one CRM object: its table, the API fields and their columns, what can be sorted,
 * filtered and referenced. The generic repository, service and routes do the rest, so every
 * object gets the same tenant scoping, versioning, pagination and error handling.
 */
export interface RecordSpec {
  object: DataObject;
  resource: RecordResource;
  table: RecordTableName;
  /** Singular noun for messages: "contact". */
  noun: string;
  /** API field -> column, for fields beyond id/ownerId/createdAt/updatedAt/version. */
  fields: Record<string, string>;
  /** API fields stored as BIGINT (returned as strings by PostgreSQL). */
  bigintFields?: readonly string[];
  sorts: Record<string, SortSpec>;
  filters: Record<string, FilterSpec>;
  /** API field -> table of the record it must point to, in the same tenant. */
  references?: Record<string, RecordTableName>;
  /**
   * Protected fields (data map `personal`/`sensitive`) are always encrypted; these are the ones
   * that can also be found by exact value: API field -> index.
   */
  blindIndexes?: Record<string, BlindIndexSpec>;
  /**
   * Whose subject key encrypts a record's protected fields: the data subject's (so that erasing
   * the person shreds them), or null for the tenant data key. Without it: the tenant key.
   */
  subjectOf?: (id: string, record: Record<string, unknown>) => string | null;
  /** Each record is a data subject itself (a contact): its own key, named by its id. */
  isSubject?: boolean;
  /** Deleting a record erases its data subject: the subject key is destroyed (shredding). */
  shredOnDelete?: boolean;
  /** Columns computed from the API values (normalised clear lookup columns). */
  derive?: (values: Record<string, unknown>) => Record<string, unknown>;
  /** Values a new record gets when the body leaves a field out. */
  defaults?: Record<string, unknown>;
  /** At least one of these fields must be set (after a change too). */
  requireOneOf?: readonly string[];
  /** ISO date-time fields: stored as UTC `...Z` so that text order is time order. */
  timestampFields?: readonly string[];
  /** Which error a unique-constraint violation means for this object. */
  uniqueConflict?: { code: ErrorCode; detail: string };
}

/**
 * What encryption at rest needs to know of a stored object (field-crypto.ts, the re-encryption
 * job and the census): its table, its fields and their columns (the data map decides which are
 * sealed), its blind indexes and whose key seals it. Every `RecordSpec` is one; user accounts
 * (src/modules/users/spec.ts) are one without being a CRM record.
 */
export type SealedSpec = Pick<
  RecordSpec,
  'object' | 'fields' | 'blindIndexes' | 'subjectOf' | 'isSubject'
> & { table: SealedTableName };

export const COMMON_SORTS: Record<string, SortSpec> = {
  createdAt: { column: 'created_at' },
  updatedAt: { column: 'updated_at' },
};
