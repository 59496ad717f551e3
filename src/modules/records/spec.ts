import type { RecordTableName } from '../../db/schema.ts';
import type { RecordResource } from '../../core/policy/index.ts';
import type { DataObject } from '../../core/privacy/index.ts';
import type { ErrorCode } from '../../errors.ts';

/** An exact-match filter on a column, with the normalisation applied to the query value. */
export interface FilterSpec {
  column: string;
  /** Returns null when the value can never match (e.g. not a phone number). */
  normalize?: (value: string) => string | null;
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
  /** Columns computed from the API values (normalised lookup columns). */
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

export const COMMON_SORTS: Record<string, SortSpec> = {
  createdAt: { column: 'created_at' },
  updatedAt: { column: 'updated_at' },
};
