import type { CustomRoleSpec } from './roles.ts';

/** Who is asking, carried by every service call. Request metadata is plain data, never HTTP. */
export type Role = 'owner' | 'admin' | 'manager' | 'agent' | 'viewer' | 'auditor';

/**
 * A tenant's own role (stored in `roles`, managed under /api/v1/roles), resolved with the actor
 * on every request so that a change counts on the next one. `version` keys the compiled ability.
 */
export interface CustomRole {
  id: string;
  name: string;
  version: number;
  definition: CustomRoleSpec;
}

export interface RequestMeta {
  requestId: string;
  ip: string | null;
  userAgent: string | null;
}

export type Actor =
  | {
      kind: 'user';
      tenantId: string;
      userId: string;
      role: Role;
      sessionId: string;
      /** When the session last proved its user (sign-in or step-up); null for older sessions. */
      authenticatedAt: string | null;
      /**
       * The tenant requires a second factor of this user, who has none: only enrolment is
       * open (see `requireSecondFactorEnrolled`). Absent means false.
       */
      mfaEnrolmentRequired?: boolean;
      /** The user's custom role: when present it decides instead of `role`. */
      customRole?: CustomRole;
      /**
       * An open break-glass grant (emergency access): set by authentication only while the grant
       * is open and unexpired at the request's start. Grants elevated read; every audit event of
       * the request carries its id.
       */
      breakGlass?: { id: string; expiresAt: string };
      request: RequestMeta;
    }
  | {
      kind: 'api_key';
      tenantId: string;
      /** The key's creator: records created through the key are owned by them. */
      userId: string;
      role: Role;
      apiKeyId: string;
      /** The key's creator must enrol a second factor and has none: the key is refused. */
      mfaEnrolmentRequired?: boolean;
      /**
       * The creator's own role now, and custom role if any: the key is never more powerful than
       * its creator, so every decision for the key is also asked of them.
       */
      creatorRole?: Role;
      creatorCustomRole?: CustomRole;
      request: RequestMeta;
    }
  | {
      kind: 'system';
      tenantId: string;
      /** What runs: `cli`, `import`, a job name. */
      job: string;
      role: Role;
      request: RequestMeta;
    };

/**
 * Ordered from least to most powerful, for who may grant what to whom (`mayGrantRole`) and the
 * role of an API key. The auditor reads the audit trail but changes nothing, so it ranks low;
 * the decisions themselves come from the role definitions (roles.ts), not from this order.
 */
export const roles: readonly Role[] = ['viewer', 'auditor', 'agent', 'manager', 'admin', 'owner'];

export function roleRank(role: Role): number {
  return roles.indexOf(role);
}

/** The weaker of two roles: an API key is never more powerful than its creator. */
export function weakerRole(a: Role, b: Role): Role {
  return roleRank(a) <= roleRank(b) ? a : b;
}

export function isRole(value: string): value is Role {
  return (roles as readonly string[]).includes(value);
}
