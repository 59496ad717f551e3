import type { ExpressionBuilder, Kysely } from 'kysely';
import type { Clock } from '../../clock.ts';
import type { Database } from '../../db/schema.ts';
import { AppError } from '../../errors.ts';
import { prepared } from '../../db/prepared.ts';
import type { SyncReader } from '../../db/database.ts';
import {
  mfaRequirementOf,
  mustHaveSecondFactor,
  weakerRole,
  type Actor,
  type CustomRole,
  type CustomRoleSpec,
  type RequestMeta,
  type Role,
} from '../../core/policy/index.ts';
import { asFlag, secondFactorColumn } from '../mfa/factors.ts';
import { hashToken, safeEqual } from '../identity/tokens.ts';
import { API_KEY_PATTERN } from '../api-keys/format.ts';
import type { AuditSink } from './events.ts';
import { createLogin } from './login.ts';
import { createLoginMfa } from './login-mfa.ts';
import { createStepUp } from './step-up.ts';
import type { MfaService } from '../mfa/service.ts';
import type { PasskeySignIn } from '../passkeys/sign-in.ts';
import type { LoginThrottle } from './throttle.ts';
import type { SessionCache } from './session-cache.ts';
import type { UserCrypto } from '../users/crypto.ts';

export type { LoginOutcome } from './login.ts';
export type { LoginResult } from './start-session.ts';

export interface AuthDeps {
  db: Kysely<Database>;
  /** SQLite's read-only connection for the per-request lookups (absent on PostgreSQL). */
  reader?: SyncReader | undefined;
  clock: Clock;
  sessionIdleMs: number;
  sessionAbsoluteMs: number;
  throttle: LoginThrottle;
  audit: AuditSink;
  mfa: Pick<MfaService, 'verifySecondFactor' | 'recordFailure'>;
  /** SQLite only: session rows kept between requests (see session-cache.ts). */
  sessionCache?: SessionCache<SessionRow> | undefined;
  passkeys: Pick<
    PasskeySignIn,
    'verifySecondFactor' | 'userAssertionStart' | 'verifyUserAssertion'
  >;
  /** Users' e-mail and name at rest (sign-in looks users up by the e-mail's blind index). */
  users: UserCrypto;
}

/** Sessions touch `last_seen_at` at most this often: the idle timeout needs no finer grain. */
const TOUCH_INTERVAL_MS = 30_000;

/** Every authenticated request runs one of these two: compiled once. */
const sessionByTokenHash = prepared((db: Kysely<Database>, p: (n: 'tokenHash') => string) =>
  db
    .selectFrom('sessions')
    .innerJoin('users', 'users.id', 'sessions.user_id')
    // The tenant's own timeouts ride along: no second query per request.
    .leftJoin('tenant_settings', 'tenant_settings.tenant_id', 'sessions.tenant_id')
    // The user's custom role rides along too: a changed role counts on the next request.
    .leftJoin('roles', (join) =>
      join
        .onRef('roles.id', '=', 'users.custom_role_id')
        .onRef('roles.tenant_id', '=', 'users.tenant_id'),
    )
    .select([
      'sessions.id',
      'sessions.tenant_id',
      'sessions.user_id',
      'sessions.created_at',
      'sessions.last_seen_at',
      'sessions.expires_at',
      'sessions.revoked_at',
      'sessions.authenticated_at',
      'users.role',
      'users.status',
      'roles.id as custom_role_id',
      'roles.name as custom_role_name',
      'roles.version as custom_role_version',
      'roles.definition as custom_role_definition',
      'tenant_settings.session_idle_minutes',
      'tenant_settings.session_absolute_hours',
      // The MFA requirement too, and whether the user meets it: computed here, on every request,
      // so a changed policy, role or factor counts at once without a query of its own.
      'tenant_settings.mfa_required',
      'tenant_settings.mfa_required_roles',
      secondFactorColumn('sessions.user_id').as('has_second_factor'),
      // The user's break-glass grant not ended early, latest expiry first (one can be open at a
      // time); whether it has run out is decided against the clock on every request.
      (eb) => openGrant(eb).select('g.id').as('break_glass_id'),
      (eb) => openGrant(eb).select('g.expires_at').as('break_glass_expires_at'),
    ])
    .where('sessions.token_hash', '=', p('tokenHash')),
);

function openGrant(
  eb: ExpressionBuilder<Database & { sessions: Database['sessions'] }, 'sessions'>,
) {
  return eb
    .selectFrom('break_glass_grants as g')
    .whereRef('g.user_id', '=', 'sessions.user_id')
    .whereRef('g.tenant_id', '=', 'sessions.tenant_id')
    .where('g.ended_at', 'is', null)
    .orderBy('g.expires_at', 'desc')
    .limit(1);
}

type SessionRow = Awaited<ReturnType<typeof sessionByTokenHash.run>>[number];

const apiKeyByPrefix = prepared((db: Kysely<Database>, p: (n: 'prefix') => string) =>
  db
    .selectFrom('api_keys')
    .innerJoin('users', 'users.id', 'api_keys.user_id')
    .leftJoin('tenant_settings', 'tenant_settings.tenant_id', 'api_keys.tenant_id')
    .leftJoin('roles', (join) =>
      join
        .onRef('roles.id', '=', 'users.custom_role_id')
        .onRef('roles.tenant_id', '=', 'users.tenant_id'),
    )
    .select([
      'api_keys.id',
      'api_keys.tenant_id',
      'api_keys.user_id',
      'api_keys.secret_hash',
      'api_keys.role',
      'api_keys.expires_at',
      'api_keys.revoked_at',
      'api_keys.last_used_at',
      'users.role as user_role',
      'users.status as user_status',
      'roles.id as custom_role_id',
      'roles.name as custom_role_name',
      'roles.version as custom_role_version',
      'roles.definition as custom_role_definition',
      'tenant_settings.mfa_required',
      'tenant_settings.mfa_required_roles',
      secondFactorColumn('api_keys.user_id').as('has_second_factor'),
    ])
    .where('api_keys.prefix', '=', p('prefix')),
);

/** The tenant requires a second factor of this user (by their own role) and they have none. */
function enrolmentPending(row: {
  mfa_required: string | null;
  mfa_required_roles: string | null;
  has_second_factor: boolean | number | string | null;
  role: Role;
}): boolean {
  const requirement = mfaRequirementOf(row.mfa_required, row.mfa_required_roles);
  return mustHaveSecondFactor(requirement, row.role) && !asFlag(row.has_second_factor);
}

interface CustomRoleColumns {
  custom_role_id: string | null;
  custom_role_name: string | null;
  custom_role_version: number | string | null;
  custom_role_definition: string | null;
}

function customRole(row: CustomRoleColumns): CustomRole | undefined {
  if (row.custom_role_id === null || row.custom_role_definition === null) return undefined;
  return {
    id: row.custom_role_id,
    name: row.custom_role_name ?? row.custom_role_id,
    version: Number(row.custom_role_version),
    definition: JSON.parse(row.custom_role_definition) as CustomRoleSpec,
  };
}
function customRoleOf(row: CustomRoleColumns): { customRole?: CustomRole } {
  const role = customRole(row);
  return role ? { customRole: role } : {};
}
function creatorCustomRoleOf(row: CustomRoleColumns): { creatorCustomRole?: CustomRole } {
  const role = customRole(row);
  return role ? { creatorCustomRole: role } : {};
}

export function createAuthService(deps: AuthDeps) {
  const { db, clock } = deps;

  const login = createLogin(deps);
  const completeMfaLogin = createLoginMfa(deps);
  const { stepUp, passkeyOptions: stepUpPasskeyOptions } = createStepUp(deps);

  /**
   * Turns a session cookie into an actor, or throws `unauthenticated`. Every authenticated
   * request runs it: the actor comes back without a promise when the session row is at hand (the
   * cache, or SQLite's reader) and nothing has to be written; the checks are the same either way.
   */
  function actorFromSession(token: string, meta: RequestMeta): Actor | Promise<Actor> {
    const tokenHash = hashToken(token);
    const cache = deps.sessionCache;
    const cached = cache?.get(tokenHash);
    if (cached) return sessionActor(cached, tokenHash, meta);
    const rows = sessionByTokenHash.readNow(db, { tokenHash }, deps.reader);
    if (rows) return sessionActor(loaded(tokenHash, rows[0]), tokenHash, meta);
    return sessionByTokenHash
      .run(db, { tokenHash })
      .then(([row]) => sessionActor(loaded(tokenHash, row), tokenHash, meta));
  }

  function loaded(tokenHash: string, row: SessionRow | undefined): SessionRow | undefined {
    if (row) deps.sessionCache?.set(tokenHash, row);
    return row;
  }

  /** The actor of a session row, after every check against the clock and the row's state. */
  function sessionActor(
    row: SessionRow | undefined,
    tokenHash: string,
    meta: RequestMeta,
  ): Actor | Promise<Actor> {
    if (!row || row.revoked_at !== null || row.status !== 'active') {
      throw new AppError('unauthenticated', 'auth.unauthenticated', 'unknown or revoked session', {
        detail: 'Sign in to continue.',
      });
    }
    const now = clock.now();
    const idleMs =
      row.session_idle_minutes === null
        ? deps.sessionIdleMs
        : Number(row.session_idle_minutes) * 60_000;
    // A tenant's shorter limit applies to sessions already open; a longer one only to new ones.
    const absoluteEnds = Math.min(
      Date.parse(row.expires_at),
      row.session_absolute_hours === null
        ? Infinity
        : Date.parse(row.created_at) + Number(row.session_absolute_hours) * 3_600_000,
    );
    const idleEnds = Date.parse(row.last_seen_at) + idleMs;
    const absolute = now.getTime() >= absoluteEnds;
    if (absolute || now.getTime() >= idleEnds) return expire(row, now, absolute, meta);
    const actor: Actor = {
      kind: 'user',
      tenantId: row.tenant_id,
      userId: row.user_id,
      role: row.role,
      ...customRoleOf(row),
      sessionId: row.id,
      authenticatedAt: row.authenticated_at,
      ...(enrolmentPending(row) ? { mfaEnrolmentRequired: true } : {}),
      // Checked against the clock here, on every request (the row may come from the cache): the
      // grant ends exactly at its expiry.
      ...(row.break_glass_id !== null &&
      row.break_glass_expires_at !== null &&
      now.getTime() < Date.parse(row.break_glass_expires_at)
        ? { breakGlass: { id: row.break_glass_id, expiresAt: row.break_glass_expires_at } }
        : {}),
      request: meta,
    };
    if (now.getTime() - Date.parse(row.last_seen_at) < TOUCH_INTERVAL_MS) return actor;
    return touch(row, tokenHash, now).then(() => actor);
  }

  /** Revokes a session past its idle or absolute limit (audited once), then refuses it. */
  async function expire(
    row: SessionRow,
    now: Date,
    absolute: boolean,
    meta: RequestMeta,
  ): Promise<never> {
    const revoked = await db
      .updateTable('sessions')
      .set({ revoked_at: now.toISOString() })
      .where('id', '=', row.id)
      .where('revoked_at', 'is', null)
      .executeTakeFirst();
    if (Number(revoked.numUpdatedRows) > 0) {
      await deps.audit.record({
        type: 'auth.session.revoked',
        at: now.toISOString(),
        requestId: meta.requestId,
        ip: meta.ip,
        tenantId: row.tenant_id,
        userId: row.user_id,
        sessionId: row.id,
        reason: absolute ? 'absolute_timeout' : 'idle_timeout',
      });
    }
    throw new AppError('unauthenticated', 'auth.session_expired', 'session expired', {
      detail: 'Your session has expired. Sign in again.',
    });
  }

  /** Moves `last_seen_at` (at most every TOUCH_INTERVAL_MS: the idle timeout needs no finer). */
  async function touch(row: SessionRow, tokenHash: string, now: Date): Promise<void> {
    // Exactly SESSION_TOUCH_SQL: the one write that leaves the session cache valid.
    await db
      .updateTable('sessions')
      .set({ last_seen_at: now.toISOString() })
      .where('id', '=', row.id)
      .execute();
    deps.sessionCache?.replace(tokenHash, { ...row, last_seen_at: now.toISOString() });
  }

  /** Turns `Authorization: Bearer <key>` into an actor no stronger than the key's creator. */
  async function actorFromApiKey(key: string, meta: RequestMeta): Promise<Actor> {
    const invalid = () =>
      new AppError('unauthenticated', 'auth.api_key_invalid', 'invalid api key', {
        detail: 'The API key is not valid, has expired or was revoked.',
      });
    const match = API_KEY_PATTERN.exec(key);
    if (!match?.groups) throw invalid();
    const { prefix, secret } = match.groups as { prefix: string; secret: string };
    const [row] = await apiKeyByPrefix.run(db, { prefix }, deps.reader);
    const now = clock.now();
    if (
      !row ||
      !safeEqual(row.secret_hash, hashToken(secret)) ||
      row.revoked_at !== null ||
      row.user_status !== 'active' ||
      (row.expires_at !== null && now.getTime() >= Date.parse(row.expires_at))
    ) {
      throw invalid();
    }
    if (
      row.last_used_at === null ||
      now.getTime() - Date.parse(row.last_used_at) >= TOUCH_INTERVAL_MS
    ) {
      await db
        .updateTable('api_keys')
        .set({ last_used_at: now.toISOString() })
        .where('id', '=', row.id)
        .execute();
    }
    return {
      kind: 'api_key',
      tenantId: row.tenant_id,
      userId: row.user_id,
      role: weakerRole(row.role, row.user_role),
      apiKeyId: row.id,
      creatorRole: row.user_role,
      ...creatorCustomRoleOf(row),
      // A key is bounded by its creator now: if they must enrol and have not, it is refused.
      ...(enrolmentPending({ ...row, role: row.user_role }) ? { mfaEnrolmentRequired: true } : {}),
      request: meta,
    };
  }

  async function logout(actor: Extract<Actor, { kind: 'user' }>): Promise<void> {
    const now = clock.now().toISOString();
    await db
      .updateTable('sessions')
      .set({ revoked_at: now })
      .where('id', '=', actor.sessionId)
      .where('revoked_at', 'is', null)
      .execute();
    await deps.audit.record({
      type: 'auth.logout',
      at: now,
      requestId: actor.request.requestId,
      ip: actor.request.ip,
      tenantId: actor.tenantId,
      userId: actor.userId,
      sessionId: actor.sessionId,
    });
  }

  async function me(actor: Actor) {
    if (actor.kind === 'system') throw new TypeError('system actors have no account');
    const user = await db
      .selectFrom('users')
      .innerJoin('tenants', 'tenants.id', 'users.tenant_id')
      .select(['users.id', 'users.email', 'users.name', 'users.role', 'tenants.slug as tenant'])
      .where('users.id', '=', actor.userId)
      .where('users.tenant_id', '=', actor.tenantId)
      .executeTakeFirstOrThrow();
    const opened = await deps.users.openOne(actor.tenantId, user);
    return { ...opened, effectiveRole: actor.role, via: actor.kind };
  }

  return {
    login,
    completeMfaLogin,
    stepUp,
    stepUpPasskeyOptions,
    logout,
    actorFromSession,
    actorFromApiKey,
    me,
  };
}

export type AuthService = ReturnType<typeof createAuthService>;
