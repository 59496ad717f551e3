/** Who is asking, carried by every service call. Request metadata is plain data, never HTTP. */
export type Role = 'owner' | 'admin' | 'member' | 'viewer';

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

/** Ordered from least to most powerful. */
export const roles: readonly Role[] = ['viewer', 'member', 'admin', 'owner'];

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
