import type { Actor } from './actor.ts';
import { fieldIn } from './ability.ts';
import { abilitiesOf, breakGlassOpen, compiledRole } from './policy.ts';
import { weakerRead, type FieldReadAccess, type RecordResource } from './roles.ts';

export type { FieldReadAccess } from './roles.ts';

/**
 * Field-level access: how a field of a record comes back to `actor` and whether they may write it.
 * This is the seam the response shaping (masking, reveal) reads; the role definitions decide the
 * answer (a single-field exception, else the field's classification in the data map). An API
 * key gets the weaker of its own answer and its creator's. Open break-glass reads in full (the one
 * break-glass rule for fields: `decide` and `scopeOf` hold the one for records).
 *
 * @example
 * ```ts
 * fieldAccess(viewer, 'contact', 'nationalId'); // { read: 'masked', write: false, reveal: false, ... }
 * fieldAccess(agent, 'contact', 'ownerId').write; // false: agents may not give records away
 * ```
 */
export interface FieldAccess {
  read: FieldReadAccess;
  write: boolean;
  /** May the caller ask for the clear value of a masked field (audited, with a reason)? */
  reveal: boolean;
  /** Which rule decided: for logs and the explain endpoint. */
  rule: string;
}

export function fieldAccess(actor: Actor, resource: RecordResource, field: string): FieldAccess {
  if (actor.kind === 'user' && actor.breakGlass === undefined) {
    // The common case, asked for every field of every record: one memoised answer.
    return fieldIn(compiledRole(actor.role, actor.customRole), resource, field);
  }
  let out: FieldAccess | undefined;
  for (const compiled of abilitiesOf(actor)) {
    const access = fieldIn(compiled, resource, field);
    out =
      out === undefined
        ? access
        : {
            read: weakerRead(out.read, access.read),
            write: out.write && access.write,
            reveal: out.reveal && access.reveal,
            rule: weakerRead(out.read, access.read) === out.read ? out.rule : access.rule,
          };
  }
  if (out === undefined) throw new TypeError('actor without a role');
  // Elevated read: every field in full (and revealable, so a client that asks through the
  // audited reveal is answered too); writing stays what the role allows.
  if (breakGlassOpen(actor)) return { ...out, read: 'full', reveal: true, rule: 'break-glass' };
  return out;
}
