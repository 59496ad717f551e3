import { classificationOf, type DataObject } from '../privacy/index.ts';
import type { Actor } from './actor.ts';
import type { RecordResource } from './policy.ts';

/**
 * Field-level access: how a field of a record comes back to `actor` and whether they may write it.
 * This is the seam the response shaping (masking, reveal) reads; the permission model decides the
 * answer. The answer here is by role and by the field's classification in the data map.
 *
 * @example
 * ```ts
 * fieldAccess(viewer, 'contact', 'nationalId'); // { read: 'masked', write: false, reveal: false, ... }
 * ```
 */
export type FieldReadAccess = 'full' | 'masked' | 'none';

export interface FieldAccess {
  read: FieldReadAccess;
  write: boolean;
  /** May the caller ask for the clear value of a masked field (audited, with a reason)? */
  reveal: boolean;
  /** Which rule decided: for logs and the explain endpoint. */
  rule: string;
}

export function fieldAccess(actor: Actor, resource: RecordResource, field: string): FieldAccess {
  const byRole = fieldAccessByRole(actor, resource, field);
  // Break-glass: elevated read of every record field while a grant is open (authentication
  // sets `breakGlass` only when the grant is unexpired). Writing stays what the role allows.
  if (actor.kind === 'user' && actor.breakGlass !== undefined) {
    return { read: 'full', write: byRole.write, reveal: true, rule: 'break-glass' };
  }
  return byRole;
}

function fieldAccessByRole(actor: Actor, resource: RecordResource, field: string): FieldAccess {
  const classification = classificationOf(resource as DataObject, field as never) ?? 'internal';
  const sensitive = classification === 'sensitive';
  switch (actor.role) {
    case 'owner':
    case 'admin':
      return { read: 'full', write: true, reveal: true, rule: 'admin-full-fields' };
    case 'member':
      return { read: 'full', write: true, reveal: true, rule: 'member-full-fields' };
    case 'viewer':
      return sensitive
        ? { read: 'masked', write: false, reveal: false, rule: 'viewer-masked-sensitive' }
        : { read: 'full', write: false, reveal: false, rule: 'viewer-reads-fields' };
  }
}
