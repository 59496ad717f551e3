import type { Kysely } from 'kysely';
import type { Clock } from '../../clock.ts';
import type { Database, RecordTableName } from '../../db/schema.ts';
import type { SyncReader } from '../../db/database.ts';
import { toNumber } from '../../db/schema.ts';
import {
  authorizeScope,
  fieldAccess,
  narrowerScope,
  scopeOf,
  type Actor,
  type RecordResource,
  type Scope,
} from '../../core/policy/index.ts';
import { AppError } from '../../errors.ts';
import { newId } from '../../ids.ts';
import { decodeCursor, encodeCursor } from './cursor.ts';
import {
  deleteRow,
  existsInTenant,
  recordOwner,
  getRow,
  getRowNow,
  insertRow,
  isForeignKeyViolation,
  isUniqueViolation,
  listRows,
  ownerInScope,
  ownerScopeOf,
  updateRowAtVersion,
  type Db,
} from './repository.ts';
import type { RecordSpec } from './spec.ts';
import { createFieldCrypto } from './field-crypto.ts';
import type { KeyService } from '../keys/service.ts';
import { auditActor, type AuditEventInput } from '../audit/event.ts';
import { appendAlone, type AuditRecorder } from '../audit/service.ts';
import { categoriesOf, type CategoriesSource } from '../audit/settings.ts';
import { fieldsClassified, type DataObject } from '../../core/privacy/index.ts';
import { createRecordShaper, type FieldView } from './shape.ts';

export interface RecordBase {
  id: string;
  ownerId: string | null;
  createdAt: string;
  updatedAt: string;
  version: number;
}
export type ApiRecord = RecordBase & Record<string, unknown>;

export interface ListParams {
  limit: number;
  cursor?: string | undefined;
  /** `createdAt` ascending, `-createdAt` descending. */
  sort?: string | undefined;
  filters: Record<string, string | undefined>;
  /** `export`: the list feeds an export, so it also keeps to the export scope. */
  purpose?: 'read' | 'export' | undefined;
}

export interface Page {
  items: ApiRecord[];
  nextCursor: string | null;
}

const COMMON_COLUMNS = ['id', 'owner_id', 'created_at', 'updated_at', 'version'] as const;
const RANGE_FILTERS = {
  createdAfter: { column: 'created_at', op: '>=' },
  createdBefore: { column: 'created_at', op: '<' },
  updatedAfter: { column: 'updated_at', op: '>=' },
} as const;

export interface RecordDeps {
  db: Kysely<Database>;
  clock: Clock;
  /** SQLite's read-only connection for reads outside transactions. */
  reader?: SyncReader | undefined;
  /** Records record.created/updated/deleted (field names only) in the change's transaction. */
  audit?: AuditRecorder | undefined;
  /** Keys of the protected fields (the data map decides which fields; see field-crypto.ts). */
  keys: KeyService;
  /** Blind-index truncation in bits (default 32; tests force collisions with a tiny one). */
  indexBits?: number | undefined;
  /** The tenant's optional audit categories (cached): `recordReads` records `record.read`. */
  auditPolicy?: CategoriesSource | undefined;
}

/** CRUD for one CRM object, scoped to the actor's tenant, authorised, versioned. */
/** The permission model's resource for each record table (references are checked in scope). */
const RESOURCE_OF_TABLE: Record<RecordTableName, RecordResource> = {
  companies: 'company',
  contacts: 'contact',
  deals: 'deal',
  activities: 'activity',
};

export function createRecordService(spec: RecordSpec, deps: RecordDeps) {
  const { db, clock } = deps;
  const crypto = createFieldCrypto(spec, { keys: deps.keys, indexBits: deps.indexBits });

  /** Appends the event in `trx`: if it fails, the change rolls back with it. */
  async function record(
    trx: Parameters<AuditRecorder['append']>[0],
    actor: Actor,
    type: 'record.created' | 'record.updated' | 'record.deleted',
    id: string,
    fields: string[],
  ) {
    await deps.audit?.append(trx, {
      tenantId: actor.tenantId,
      type,
      ...auditActor(actor),
      target: { type: spec.resource, id },
      fields,
    });
  }
  const personalFields: readonly string[] = fieldsClassified(spec.resource as DataObject, [
    'personal',
    'sensitive',
  ]);
  const sensitiveFields: readonly string[] = fieldsClassified(spec.resource as DataObject, [
    'sensitive',
  ]);

  const shaper = createRecordShaper(spec);

  /**
   * `record.read` for each record that `actor` just read with personal data in clear, naming the
   * fields it carried in clear (never values). Reads of `sensitive` fields in clear are always
   * recorded (a mandatory category); reads of the other personal fields when the tenant turned
   * `recordReads` on, and always under break-glass (every access made under it is recorded).
   * Masked values are not reads of the data. Fails closed: if the event cannot be written, the
   * read fails.
   */
  function recordReads(
    actor: Actor,
    view: FieldView,
    items: readonly ApiRecord[],
  ): Promise<void> | undefined {
    if (!deps.audit || personalFields.length === 0 || items.length === 0) return undefined;
    const breakGlass = actor.kind === 'user' && actor.breakGlass !== undefined;
    if (breakGlass || !deps.auditPolicy) return appendReads(actor, view, items, breakGlass);
    // Without a promise when the tenant's policy is cached: the GET path runs this every time.
    const policy = categoriesOf(deps.auditPolicy, actor.tenantId);
    return policy instanceof Promise
      ? policy.then((p) => appendReads(actor, view, items, p.recordReads))
      : appendReads(actor, view, items, policy.recordReads);
  }

  /** The `record.read` events of `recordReads` (undefined: nothing to record). */
  function appendReads(
    actor: Actor,
    view: FieldView,
    items: readonly ApiRecord[],
    everyPersonal: boolean,
  ): Promise<void> | undefined {
    const watched = everyPersonal ? personalFields : sensitiveFields;
    if (watched.length === 0 || !deps.audit) return undefined;
    const audit = deps.audit;
    const clear = watched.filter((f) => view.get(f)?.read === 'full');
    if (!items.some((item) => clear.some((f) => item[f] != null))) return undefined;
    const events: AuditEventInput[] = [];
    for (const item of items) {
      const fields = clear.filter((f) => item[f] != null);
      if (fields.length === 0) continue;
      events.push({
        tenantId: actor.tenantId,
        type: 'record.read',
        ...auditActor(actor),
        target: { type: spec.resource, id: item.id },
        fields,
      });
    }
    // All or none, committed before the values leave.
    return appendAlone(db, audit, events).then(() => undefined);
  }
  const columns = [...COMMON_COLUMNS, ...Object.values(spec.fields)];
  const bigints = new Set(spec.bigintFields ?? []);
  const notFound = () =>
    new AppError('not_found', 'resource.not_found', `${spec.noun} not found`, {
      detail: `No ${spec.noun} with this id.`,
    });

  /**
   * A record outside the caller's scope answers like a missing one (no hint that it exists).
   * Undefined (no promise) when the scope is `all`: nothing to check.
   */
  function requireInScope(
    trx: Db,
    actor: Actor,
    scope: Scope,
    ownerId: unknown,
  ): Promise<void> | undefined {
    const filter = ownerScopeOf(actor, scope);
    if (!filter) return undefined;
    const owner = typeof ownerId === 'string' ? ownerId : null;
    return ownerInScope(trx, actor.tenantId, filter, owner).then((inScope) => {
      if (!inScope) throw notFound();
    });
  }

  /**
   * No mass assignment: every field the body sets must be writable by the caller's role, and
   * `ownerId` (other than the caller themself) needs the right to assign owners.
   */
  function requireWritable(actor: Actor, values: Record<string, unknown>) {
    const refused = Object.keys(values).filter((field) => {
      if (field === 'ownerId' && actor.kind !== 'system' && values[field] === actor.userId) {
        return false;
      }
      return !fieldAccess(actor, spec.resource, field).write;
    });
    if (refused.length === 0) return;
    throw new AppError('forbidden', 'policy.field_not_writable', 'field not writable', {
      detail: `Your role may not set ${refused.map((f) => `body/${f}`).join(', ')}.`,
      errors: refused.map((f) => ({
        field: `body/${f}`,
        reason: 'may not be written by your role',
      })),
    });
  }

  function toApi(row: Record<string, unknown>): ApiRecord {
    const out: ApiRecord = {
      id: row.id as string,
      ownerId: row.owner_id as string | null,
      createdAt: row.created_at as string,
      updatedAt: row.updated_at as string,
      version: Number(row.version),
    };
    for (const [field, column] of Object.entries(spec.fields)) {
      const value = row[column] ?? null;
      out[field] = bigints.has(field) ? toNumber(value as number | string | null) : value;
    }
    return out;
  }

  /** Columns for `values`, plus the derived columns computed from `whole` (the full record). */
  function toColumns(
    values: Record<string, unknown>,
    whole: Record<string, unknown> = values,
  ): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const [field, value] of Object.entries(values)) {
      if (field === 'ownerId') out.owner_id = value;
      else {
        const column = spec.fields[field];
        if (column === undefined) throw new TypeError(`unknown field ${spec.noun}.${field}`);
        out[column] = value;
      }
    }
    return { ...out, ...spec.derive?.(whole) };
  }

  /** Field-level rules a JSON schema cannot say: timestamps to UTC, one link required. */
  function normalizeInput(values: Record<string, unknown>, whole: Record<string, unknown>) {
    const out = { ...values };
    const bad: { field: string; reason: string }[] = [];
    for (const field of spec.timestampFields ?? []) {
      const v = out[field];
      if (typeof v !== 'string') continue;
      const t = Date.parse(v);
      if (Number.isNaN(t)) bad.push({ field: `body/${field}`, reason: 'is not a valid date-time' });
      else out[field] = new Date(t).toISOString();
    }
    const oneOf = spec.requireOneOf;
    if (oneOf && !oneOf.some((f) => ({ ...whole, ...out })[f] != null)) {
      bad.push({ field: 'body', reason: `must set at least one of ${oneOf.join(', ')}` });
    }
    if (bad.length > 0) {
      throw new AppError('invalid', 'request.invalid', 'invalid record', {
        detail: bad.map((b) => `${b.field} ${b.reason}`).join('; '),
        errors: bad,
      });
    }
    return out;
  }

  /**
   * Every id the body refers to names a record of the caller's tenant that the caller may read:
   * one out of their record scope gets the same answer as a missing one (no existence oracle).
   */
  async function checkReferences(trx: Db, actor: Actor, values: Record<string, unknown>) {
    const bad: { field: string; reason: string }[] = [];
    const refuse = (field: string) =>
      bad.push({ field: `body/${field}`, reason: 'does not refer to an existing record' });
    const owner = values.ownerId;
    // The same answer for a missing id and another tenant's id: no hint that it exists.
    if (typeof owner === 'string' && !(await existsInTenant(trx, 'users', actor.tenantId, owner))) {
      refuse('ownerId');
    }
    for (const [field, table] of Object.entries(spec.references ?? {})) {
      const id = values[field];
      if (typeof id !== 'string') continue;
      const found = await recordOwner(trx, table, actor.tenantId, id);
      const scope = scopeOf(actor, 'read', RESOURCE_OF_TABLE[table]);
      const filter = scope === null ? undefined : ownerScopeOf(actor, scope);
      const visible =
        found !== undefined &&
        scope !== null &&
        (filter === undefined || (await ownerInScope(trx, actor.tenantId, filter, found.ownerId)));
      if (!visible) refuse(field);
    }
    if (bad.length > 0) {
      throw new AppError('invalid', 'resource.invalid_reference', 'dangling reference', {
        detail: bad.map((b) => `${b.field} ${b.reason}`).join('; '),
        errors: bad,
      });
    }
  }

  function translateWriteError(error: unknown): never {
    if (isUniqueViolation(error) && spec.uniqueConflict) {
      throw new AppError('conflict', spec.uniqueConflict.code, 'unique constraint', {
        detail: spec.uniqueConflict.detail,
        cause: error,
      });
    }
    if (isForeignKeyViolation(error)) {
      throw new AppError('invalid', 'resource.invalid_reference', 'reference vanished', {
        detail: 'A referenced record no longer exists.',
        cause: error,
      });
    }
    throw error;
  }

  async function list(actor: Actor, params: ListParams): Promise<Page> {
    let scope = authorizeScope(actor, 'read', spec.resource);
    if (params.purpose === 'export') {
      scope = narrowerScope(scope, scopeOf(actor, 'export', spec.resource)) ?? scope;
    }
    const view = shaper.view(actor);
    const sortParam = params.sort ?? 'createdAt';
    const direction = sortParam.startsWith('-') ? 'desc' : 'asc';
    const sortName = sortParam.replace(/^-/, '');
    const sort = spec.sorts[sortName];
    if (!sort) {
      throw new AppError('invalid', 'request.invalid', 'unknown sort', {
        detail: `sort must be one of: ${Object.keys(spec.sorts).join(', ')} (prefix "-" for descending).`,
        errors: [{ field: 'querystring/sort', reason: 'is not a sortable field' }],
      });
    }
    shaper.assertQueryable(actor, view, [
      ...(params.sort === undefined ? [] : [sortName]),
      ...Object.keys(params.filters).filter((name) => params.filters[name] !== undefined),
    ]);
    const equals: { column: string; value: string }[] = [];
    const confirms: ((row: Record<string, unknown>) => boolean)[] = [];
    const ranges: { column: string; op: '>=' | '<'; value: string }[] = [];
    for (const [name, raw] of Object.entries(params.filters)) {
      if (raw === undefined) continue;
      const range = RANGE_FILTERS[name as keyof typeof RANGE_FILTERS];
      if (range) {
        const t = Date.parse(raw);
        if (Number.isNaN(t)) {
          throw new AppError('invalid', 'request.invalid', 'bad date filter', {
            errors: [{ field: `querystring/${name}`, reason: 'is not a valid date-time' }],
            detail: `querystring/${name} is not a valid date-time`,
          });
        }
        ranges.push({ ...range, value: new Date(t).toISOString() });
        continue;
      }
      const filter = spec.filters[name];
      if (!filter) throw new TypeError(`filter ${name} has no spec`);
      if ('blindIndex' in filter) {
        const index = await crypto.indexFilter(db, actor.tenantId, filter.blindIndex, raw);
        if (index === null) return { items: [], nextCursor: null };
        equals.push({ column: index.column, value: index.value });
        confirms.push(index.confirm);
        continue;
      }
      const value = filter.normalize ? filter.normalize(raw) : raw;
      if (value === null) return { items: [], nextCursor: null };
      equals.push({ column: filter.column, value });
    }
    let after: { value: string | number; id: string } | undefined = params.cursor
      ? decodeCursor(params.cursor, sortName, direction)
      : undefined;
    const rows: Record<string, unknown>[] = [];
    // A blind index returns candidates (it collides by design): keep those whose decrypted value
    // matches, and read on past the dropped ones until the page is full or the rows run out.
    for (;;) {
      const wanted = params.limit + 1 - rows.length;
      const batch = await listRows(db, spec.table, {
        tenantId: actor.tenantId,
        columns,
        equals,
        ranges,
        sort,
        direction,
        after,
        limit: wanted,
        scope: ownerScopeOf(actor, scope),
      });
      const opened = await crypto.open(actor.tenantId, batch);
      rows.push(...opened.filter((row) => confirms.every((confirm) => confirm(row))));
      const last = batch.at(-1);
      if (rows.length > params.limit || batch.length < wanted || !last) break;
      after = { value: sortValue(last, sort), id: last.id as string };
    }
    const more = rows.length > params.limit;
    const page = more ? rows.slice(0, params.limit) : rows;
    const last = page.at(-1);
    let nextCursor: string | null = null;
    if (more && last) {
      const value = sortValue(last, sort);
      nextCursor = encodeCursor({ sort: sortName, direction, value, id: last.id as string });
    }
    const items = page.map(toApi);
    await recordReads(actor, view, items);
    return { items: items.map((item) => shaper.shape(view, item)), nextCursor };
  }

  async function get(actor: Actor, id: string): Promise<ApiRecord> {
    const scope = authorizeScope(actor, 'read', spec.resource);
    // Every authenticated GET runs this: on SQLite the steps that need no waiting create no
    // promise (each costs more with the tenant scope's async tracking on).
    const now = getRowNow(db, spec.table, actor.tenantId, id, columns, deps.reader);
    const row = now.found
      ? now.row
      : await getRow(db, spec.table, actor.tenantId, id, columns, deps.reader);
    if (!row) throw notFound();
    const inScope = requireInScope(db, actor, scope, row.owner_id);
    if (inScope) await inScope;
    const [opened] = await crypto.open(actor.tenantId, [row]);
    const item = toApi(opened ?? row);
    const view = shaper.view(actor);
    const reads = recordReads(actor, view, [item]);
    if (reads) await reads;
    return shaper.shape(view, item);
  }

  /**
   * The clear values of `fields` of one record, inside `trx` (the caller records why in the same
   * transaction). Not shaped: only the reveal use case calls it, after its own checks.
   */
  async function readClear(
    trx: Db,
    actor: Actor,
    id: string,
    fields: readonly string[],
  ): Promise<Record<string, unknown>> {
    const scope = authorizeScope(actor, 'read', spec.resource);
    const row = await getRow(trx, spec.table, actor.tenantId, id, columns);
    if (!row) throw notFound();
    // Out of the caller's record scope: the same answer as a record that does not exist.
    await requireInScope(trx, actor, scope, row.owner_id);
    const [opened] = await crypto.open(actor.tenantId, [row]);
    const item = toApi(opened ?? row);
    return Object.fromEntries(fields.map((f) => [f, item[f] ?? null]));
  }

  async function create(actor: Actor, input: Record<string, unknown>): Promise<ApiRecord> {
    authorizeScope(actor, 'create', spec.resource);
    requireWritable(actor, input);
    const now = clock.now().toISOString();
    const ownerId = input.ownerId ?? (actor.kind === 'system' ? null : actor.userId);
    const values = normalizeInput({ ...spec.defaults, ...input, ownerId }, {});
    // A record keyed by another record's subject: refuse a dangling link before touching keys
    // (checked again in the transaction, against a deletion meanwhile).
    if (spec.subjectOf) await checkReferences(db, actor, values);
    // A data subject's id comes with its key (created in batches); other records' ids are new.
    const subject = spec.isSubject ? await crypto.newSubject(actor.tenantId) : undefined;
    const id = subject?.id ?? newId();
    const sealed = await crypto.seal(actor.tenantId, id, values, values, subject?.key);
    const row: Record<string, unknown> & { id: string } = {
      ...toColumns(sealed.values, values),
      id,
      tenant_id: actor.tenantId,
      created_at: now,
      updated_at: now,
      version: 1,
    };
    try {
      await db.transaction().execute(async (trx) => {
        await checkReferences(trx, actor, values);
        // In the transaction: the tenant's phone region cannot change before it commits.
        if (crypto.touchesIndex(values)) {
          const indexing = await crypto.indexKeys(actor.tenantId, trx, values);
          Object.assign(row, crypto.indexColumnsWith(indexing, values));
        }
        await insertRow(trx, spec.table, row);
        const set = Object.keys(values).filter((f) => values[f] != null);
        await record(trx, actor, 'record.created', row.id, set);
      });
    } catch (error) {
      translateWriteError(error);
    }
    return shaper.shape(shaper.view(actor), toApi({ ...row, ...toColumns(values) }));
  }

  async function update(
    actor: Actor,
    id: string,
    version: number,
    patch: Record<string, unknown>,
  ): Promise<ApiRecord> {
    const scope = authorizeScope(actor, 'update', spec.resource);
    requireWritable(actor, patch);
    try {
      return await db.transaction().execute(async (trx) => {
        const stored = await getRow(trx, spec.table, actor.tenantId, id, columns);
        if (!stored) throw notFound();
        await requireInScope(trx, actor, scope, stored.owner_id);
        if (Number(stored.version) !== version) throw versionMismatch(Number(stored.version));
        const [current = stored] = await crypto.open(actor.tenantId, [stored]);
        const view = shaper.view(actor);
        const changed = normalizeInput(
          shaper.withoutMaskEcho(view, patch, toApi(current)),
          toApi(current),
        );
        const merged = { ...toApi(current), ...changed };
        await checkReferences(trx, actor, changed);
        // A record that moves to another key (an activity linked to another contact) is
        // sealed again whole, so no value stays under the key it left.
        const toSeal = crypto.keyChanges(id, toApi(current), merged)
          ? { ...pick(merged, crypto.fields), ...changed }
          : changed;
        const sealed = await crypto.seal(actor.tenantId, id, toSeal, merged);
        const indexColumns = crypto.touchesIndex(toSeal)
          ? crypto.indexColumnsWith(await crypto.indexKeys(actor.tenantId, trx, toSeal), toSeal)
          : {};
        const changes = {
          ...toColumns(sealed.values, merged),
          ...indexColumns,
          updated_at: clock.now().toISOString(),
        };
        if (!(await updateRowAtVersion(trx, spec.table, actor.tenantId, id, version, changes))) {
          throw versionMismatch(undefined);
        }
        const written = await getRow(trx, spec.table, actor.tenantId, id, columns);
        if (!written) throw notFound();
        const [row = written] = await crypto.open(actor.tenantId, [written]);
        const before = toApi(current);
        const after = toApi(row);
        const fields = Object.keys(changed).filter(
          (f) => JSON.stringify(before[f] ?? null) !== JSON.stringify(after[f] ?? null),
        );
        await record(trx, actor, 'record.updated', id, fields);
        return shaper.shape(view, after);
      });
    } catch (error) {
      translateWriteError(error);
    }
  }

  async function remove(actor: Actor, id: string, version: number | undefined): Promise<void> {
    const scope = authorizeScope(actor, 'delete', spec.resource);
    await db.transaction().execute(async (trx) => {
      const current = await getRow(trx, spec.table, actor.tenantId, id, ['version', 'owner_id']);
      if (!current) throw notFound();
      await requireInScope(trx, actor, scope, current.owner_id);
      if (version !== undefined && Number(current.version) !== version) {
        throw versionMismatch(Number(current.version));
      }
      if (!(await deleteRow(trx, spec.table, actor.tenantId, id, version))) throw notFound();
      await record(trx, actor, 'record.deleted', id, []);
      // Erasure by crypto-shredding: without the subject's key, no copy of the values (backups
      // included) can be read. Inside the transaction: if destroying fails, nothing is deleted.
      if (spec.shredOnDelete) await deps.keys.destroySubjectKey(actor.tenantId, id);
    });
  }

  return { spec, list, get, readClear, create, update, remove, toApi, crypto };
}

/** The keyset value of a row (sort columns are text or integers; NULL as its stand-in). */
function sortValue(row: Record<string, unknown>, sort: RecordSpec['sorts'][string]) {
  const raw = (row[sort.column] ?? sort.nullsAs) as string | number;
  return typeof raw === 'number' ? raw : String(raw);
}

function pick(values: Record<string, unknown>, fields: readonly string[]) {
  const out: Record<string, unknown> = {};
  for (const f of fields) if (values[f] !== undefined) out[f] = values[f];
  return out;
}

function versionMismatch(current: number | undefined) {
  return new AppError('precondition_failed', 'resource.version_mismatch', 'stale version', {
    detail:
      current === undefined
        ? 'The record was changed by someone else. Fetch it again and reapply your change.'
        : `The record is at version ${current}. Fetch it again and reapply your change.`,
  });
}

export type RecordService = ReturnType<typeof createRecordService>;
