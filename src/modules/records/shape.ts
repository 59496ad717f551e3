import { fieldAccess, type Actor, type FieldAccess } from '../../core/policy/index.ts';
import { maskValue } from '../../core/privacy/index.ts';
import { AppError } from '../../errors.ts';
import type { RecordSpec } from './spec.ts';

/** The fields the caller may read of one object, decided once per request (not per record). */
export type FieldView = ReadonlyMap<string, FieldAccess>;

/** Query parameters that read a field: range filters name the timestamp they compare. */
const QUERY_FIELDS: Record<string, string> = {
  createdAfter: 'createdAt',
  createdBefore: 'createdAt',
  updatedAfter: 'updatedAt',
};

/**
 * Response shaping: every record leaves the service through `shape`, so list, get, the echo of a
 * create or an update, exact-match search and exports (which read through `list`) all carry what
 * `fieldAccess` allows and nothing more:
 *
 * - `full`: the value;
 * - `masked`: the value masked by the field's declared type (`core/privacy/mask.ts`); the field's
 *   name is listed in the record's `maskedFields`;
 * - `none`: `null`, like an empty field (the field stays in the shape the schema promises).
 */
export function createRecordShaper(spec: RecordSpec) {
  const shaped = ['ownerId', ...Object.keys(spec.fields)];

  function view(actor: Actor): FieldView {
    return new Map(shaped.map((f) => [f, fieldAccess(actor, spec.resource, f)]));
  }

  /** Whether every shaped field reads in full: the record passes unchanged. */
  function allFull(v: FieldView): boolean {
    for (const access of v.values()) if (access.read !== 'full') return false;
    return true;
  }

  function shape<R extends Record<string, unknown>>(v: FieldView, record: R): R {
    if (allFull(v)) return record;
    const out: Record<string, unknown> = { ...record };
    const masked: string[] = [];
    for (const [field, access] of v) {
      if (access.read === 'full') continue;
      if (access.read === 'none') out[field] = null;
      else {
        out[field] = maskValue(spec.object, field as never, record[field]);
        masked.push(field);
      }
    }
    if (masked.length > 0) out.maskedFields = masked;
    return out as R;
  }

  /**
   * The patch without the fields that only send back the mask the caller was shown (a form saved
   * whole): writing them would replace the hidden value with its own mask.
   */
  function withoutMaskEcho(
    v: FieldView,
    patch: Record<string, unknown>,
    current: Record<string, unknown>,
  ): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const [field, value] of Object.entries(patch)) {
      const echo =
        v.get(field)?.read === 'masked' &&
        typeof value === 'string' &&
        value !== current[field] &&
        value === maskValue(spec.object, field as never, current[field]);
      if (!echo) out[field] = value;
    }
    return out;
  }

  /**
   * Refuses a query that compares or sorts on a field the caller does not see in full: counting
   * the matches of `?email=...` would otherwise tell a masked e-mail, one guess at a time.
   */
  function assertQueryable(actor: Actor, v: FieldView, names: readonly string[]): void {
    const refused = names.filter((name) => {
      const field = QUERY_FIELDS[name] ?? name;
      const access = v.get(field) ?? fieldAccess(actor, spec.resource, field);
      return access.read !== 'full';
    });
    if (refused.length === 0) return;
    throw new AppError('forbidden', 'policy.field_forbidden', `query on hidden field`, {
      detail: `Your role does not see ${refused.join(', ')} of a ${spec.noun} in full, so it may not filter or sort by it.`,
      errors: refused.map((name) => ({
        field: `querystring/${name}`,
        reason: 'names a field your role does not see in full',
      })),
    });
  }

  return { view, shape, withoutMaskEcho, assertQueryable };
}
