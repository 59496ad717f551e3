import { generateKeyPairSync } from 'node:crypto';
import { Secret, TOTP } from 'otpauth';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createTestContext,
  PASSWORD,
  renewSession,
  type Session,
  type TestContext,
} from '../helpers/context.ts';
import { expectCode } from '../helpers/problem.ts';
import { SoftwareAuthenticator } from '../helpers/webauthn-authenticator.ts';
import { FRESH_AUTH_MS } from '../../src/core/policy/index.ts';
import type { Role } from '../../src/db/schema.ts';

/**
 * The authorization matrix, generated from the OpenAPI document: every operation it lists must
 * have a row in EXPECTATIONS below (a new route without one fails the test). Record operations
 * run for every built-in role against a record owned by the caller, by a colleague on the same
 * team, by a user of another team and by another tenant (a create that links to a record: linking
 * to a record of each); administrative operations run for every role. Every write to one's own
 * account runs for every role on a throwaway user of that role (so that ending sessions or
 * changing the password leaves the matrix's sessions alone), and every public operation runs
 * anonymously and signed in as every role, with the same answer each time. The expected answers
 * come from the small tables here, written from the role descriptions in README "Permissions",
 * never from the permission model itself.
 */

const ROLES: Role[] = ['owner', 'admin', 'manager', 'agent', 'viewer', 'auditor'];
type Relation = 'own' | 'colleague' | 'otherTeam' | 'otherTenant';
const RELATIONS: Relation[] = ['own', 'colleague', 'otherTeam', 'otherTenant'];

/** Which records each role reaches (read, link to, and change when it may change at all). */
const REACH: Record<Role, Relation[]> = {
  owner: ['own', 'colleague', 'otherTeam'],
  admin: ['own', 'colleague', 'otherTeam'],
  manager: ['own', 'colleague'],
  agent: ['own'],
  viewer: ['own', 'colleague', 'otherTeam'],
  auditor: ['own', 'colleague', 'otherTeam'],
};
const WRITES: Record<Role, boolean> = {
  owner: true,
  admin: true,
  manager: true,
  agent: true,
  viewer: false,
  auditor: false,
};
const EXPORTS: Role[] = ['owner', 'admin', 'manager', 'agent'];

type Expectation =
  | { kind: 'record'; resource: string; op: 'list' | 'create' | 'get' | 'update' | 'delete' }
  | { kind: 'export' }
  /** Runs for every role: `allowed` get a non-refusal, the others 403. */
  | {
      kind: 'admin';
      allowed: Role[];
      query?: string;
      body?: () => object;
      /** A CSV upload as the body instead. */
      csv?: string;
      /** A 2xx is expected of allowed roles (otherwise anything but 401/403, e.g. 404). */
      succeeds?: boolean;
    }
  /**
   * The caller's own account: open to every role. Reads run with the administrative operations;
   * writes run in SELF_WRITES, for every role, on a throwaway user of that role.
   */
  | { kind: 'self'; write: boolean }
  /**
   * Reachable without signing in (sign-in itself, health): each case runs anonymously and signed
   * in as every role, and must get the same answer every time.
   */
  | { kind: 'public'; cases: PublicCase[] };

interface PublicCase {
  what: string;
  status: number;
  code?: string;
  /** The request, from `ip`, as `caller` (null: anonymous). */
  run(caller: Session | null, ip: string): Promise<Response>;
}
type Response = Awaited<ReturnType<TestContext['app']['inject']>>;

const ADMINS: Role[] = ['owner', 'admin'];
const READERS_OF_AUDIT: Role[] = ['owner', 'admin', 'auditor'];
const missing = '00000000-0000-7000-8000-000000000000';
const recipientKey = generateKeyPairSync('rsa', { modulusLength: 2048 })
  .publicKey.export({ type: 'spki', format: 'pem' })
  .toString();
let counter = 0;
const uniq = (p: string) => `${p}-${process.pid}-${++counter}`;
/** A well-formed link token or mfaToken that was never issued. */
const TOKEN = 'A'.repeat(43);
const NEW_PASSWORD = 'violet lanterns drift over the quiet harbour';

const recordRows = (path: string, resource: string): Record<string, Expectation> => ({
  [`get /api/v1/${path}`]: { kind: 'record', resource, op: 'list' },
  [`post /api/v1/${path}`]: { kind: 'record', resource, op: 'create' },
  [`get /api/v1/${path}/{id}`]: { kind: 'record', resource, op: 'get' },
  [`patch /api/v1/${path}/{id}`]: { kind: 'record', resource, op: 'update' },
  [`delete /api/v1/${path}/{id}`]: { kind: 'record', resource, op: 'delete' },
});

const EXPECTATIONS: Record<string, Expectation> = {
  'get /healthz': {
    kind: 'public',
    cases: [{ what: 'health', status: 200, run: (c, ip) => from(c, ip, 'get', '/healthz') }],
  },
  'get /readyz': {
    kind: 'public',
    cases: [{ what: 'readiness', status: 200, run: (c, ip) => from(c, ip, 'get', '/readyz') }],
  },
  // A wrong password, then the right one (a success resets the account's failure count, so the
  // callers one after the other never lock the account).
  'post /api/v1/auth/login': {
    kind: 'public',
    cases: [
      {
        what: 'a wrong password',
        status: 401,
        code: 'auth.invalid_credentials',
        run: (c, ip) => signIn(c, ip, signer, 'not the password of anyone'),
      },
      { what: 'the right password', status: 200, run: (c, ip) => signIn(c, ip, signer, PASSWORD) },
    ],
  },
  'post /api/v1/auth/login/mfa': {
    kind: 'public',
    cases: [
      {
        what: 'an unknown mfaToken',
        status: 401,
        code: 'auth.mfa_challenge_invalid',
        run: (c, ip) =>
          from(c, ip, 'post', '/api/v1/auth/login/mfa', { mfaToken: TOKEN, code: '123456' }),
      },
    ],
  },
  'post /api/v1/auth/password-reset': {
    kind: 'public',
    cases: [
      {
        what: 'the address of a user',
        status: 202,
        run: (c, ip) =>
          from(c, ip, 'post', '/api/v1/auth/password-reset', {
            tenant: signer.tenant,
            email: signer.email,
          }),
      },
    ],
  },
  'post /api/v1/auth/password-reset/confirm': {
    kind: 'public',
    cases: [
      {
        what: 'an unknown link',
        status: 400,
        code: 'auth.reset_token_invalid',
        run: (c, ip) =>
          from(c, ip, 'post', '/api/v1/auth/password-reset/confirm', {
            token: TOKEN,
            newPassword: NEW_PASSWORD,
          }),
      },
    ],
  },
  'post /api/v1/auth/password-reset/passkey-options': {
    kind: 'public',
    cases: [
      {
        what: 'an unknown link',
        status: 400,
        code: 'auth.reset_token_invalid',
        run: (c, ip) =>
          from(c, ip, 'post', '/api/v1/auth/password-reset/passkey-options', { token: TOKEN }),
      },
    ],
  },
  'post /api/v1/auth/email/confirm': {
    kind: 'public',
    cases: [
      {
        what: 'an unknown link',
        status: 400,
        code: 'auth.email_token_invalid',
        run: (c, ip) => from(c, ip, 'post', '/api/v1/auth/email/confirm', { token: TOKEN }),
      },
    ],
  },
  'post /api/v1/auth/passkeys/login/options': {
    kind: 'public',
    cases: [
      {
        what: 'a tenant',
        status: 200,
        run: (c, ip) =>
          from(c, ip, 'post', '/api/v1/auth/passkeys/login/options', { tenant: target.tenant }),
      },
    ],
  },
  'post /api/v1/auth/passkeys/login': {
    kind: 'public',
    cases: [
      {
        what: 'the passkey of a user',
        status: 200,
        run: async (c, ip) => {
          const options = await passkeyOptions(c, ip, '/api/v1/auth/passkeys/login/options', {
            tenant: target.tenant,
          });
          return from(c, ip, 'post', '/api/v1/auth/passkeys/login', {
            tenant: target.tenant,
            credential: targetKey.assert(options),
          });
        },
      },
      {
        what: 'an unknown passkey',
        status: 401,
        code: 'auth.passkey_invalid',
        run: async (c, ip) => {
          const options = await passkeyOptions(c, ip, '/api/v1/auth/passkeys/login/options', {
            tenant: target.tenant,
          });
          return from(c, ip, 'post', '/api/v1/auth/passkeys/login', {
            tenant: target.tenant,
            credential: SoftwareAuthenticator.create().assert(options),
          });
        },
      },
    ],
  },
  'post /api/v1/auth/passkeys/login/mfa/options': {
    kind: 'public',
    cases: [
      {
        what: 'the mfaToken of a password sign-in',
        status: 200,
        run: async (c, ip) => {
          const mfaToken = await mfaTokenOf(c, ip);
          const res = await from(c, ip, 'post', '/api/v1/auth/passkeys/login/mfa/options', {
            mfaToken,
          });
          // The sign-in is completed: until then the account's failure count keeps the attempt.
          const done = await from(c, ip, 'post', '/api/v1/auth/passkeys/login/mfa', {
            mfaToken,
            credential: targetKey.assert(res.json()),
          });
          expect(done.statusCode, done.body).toBe(200);
          return res;
        },
      },
      {
        what: 'an unknown mfaToken',
        status: 401,
        code: 'auth.mfa_challenge_invalid',
        run: (c, ip) =>
          from(c, ip, 'post', '/api/v1/auth/passkeys/login/mfa/options', { mfaToken: TOKEN }),
      },
    ],
  },
  'post /api/v1/auth/passkeys/login/mfa': {
    kind: 'public',
    cases: [
      {
        what: 'the passkey after the password',
        status: 200,
        run: async (c, ip) => {
          const mfaToken = await mfaTokenOf(c, ip);
          const options = await passkeyOptions(c, ip, '/api/v1/auth/passkeys/login/mfa/options', {
            mfaToken,
          });
          return from(c, ip, 'post', '/api/v1/auth/passkeys/login/mfa', {
            mfaToken,
            credential: targetKey.assert(options),
          });
        },
      },
    ],
  },
  'post /api/v1/auth/step-up': { kind: 'self', write: true },
  'post /api/v1/auth/step-up/passkey-options': { kind: 'self', write: true },
  'post /api/v1/auth/logout': { kind: 'self', write: true },
  'get /api/v1/auth/me': { kind: 'self', write: false },
  'post /api/v1/auth/password': { kind: 'self', write: true },
  'post /api/v1/auth/email': { kind: 'self', write: true },
  'post /api/v1/auth/mfa/totp': { kind: 'self', write: true },
  'delete /api/v1/auth/mfa/totp': { kind: 'self', write: true },
  'post /api/v1/auth/mfa/totp/confirm': { kind: 'self', write: true },
  'post /api/v1/auth/mfa/recovery-codes': { kind: 'self', write: true },
  'post /api/v1/auth/passkeys/registration/options': { kind: 'self', write: true },
  'post /api/v1/auth/passkeys/registration': { kind: 'self', write: true },
  'get /api/v1/auth/passkeys': { kind: 'self', write: false },
  'patch /api/v1/auth/passkeys/{id}': { kind: 'self', write: true },
  'delete /api/v1/auth/passkeys/{id}': { kind: 'self', write: true },
  'get /api/v1/auth/sessions': { kind: 'self', write: false },
  'delete /api/v1/auth/sessions/{id}': { kind: 'self', write: true },
  'post /api/v1/auth/sessions/revoke-others': { kind: 'self', write: true },
  'get /api/v1/users': { kind: 'admin', allowed: READERS_OF_AUDIT, succeeds: true },
  'post /api/v1/users': {
    kind: 'admin',
    allowed: ADMINS,
    succeeds: true,
    body: () => ({
      email: `${uniq('u')}@example.com`,
      name: 'New',
      role: 'viewer',
      password: 'a long enough passphrase for tests',
    }),
  },
  'get /api/v1/users/{id}': { kind: 'admin', allowed: READERS_OF_AUDIT },
  'patch /api/v1/users/{id}': { kind: 'admin', allowed: ADMINS, body: () => ({ name: 'X' }) },
  'post /api/v1/users/{id}/unlock': { kind: 'admin', allowed: ADMINS },
  'delete /api/v1/users/{id}/sessions': { kind: 'admin', allowed: ADMINS },
  'put /api/v1/users/{id}/custom-role': {
    kind: 'admin',
    allowed: ADMINS,
    body: () => ({ roleId: null }),
  },
  'get /api/v1/roles': { kind: 'admin', allowed: READERS_OF_AUDIT, succeeds: true },
  'post /api/v1/roles': {
    kind: 'admin',
    allowed: ADMINS,
    succeeds: true,
    body: () => ({ name: uniq('role'), spec: { base: 'viewer' } }),
  },
  'get /api/v1/roles/{id}': { kind: 'admin', allowed: READERS_OF_AUDIT },
  'patch /api/v1/roles/{id}': { kind: 'admin', allowed: ADMINS, body: () => ({ name: uniq('r') }) },
  'delete /api/v1/roles/{id}': { kind: 'admin', allowed: ADMINS },
  'get /api/v1/teams': { kind: 'admin', allowed: READERS_OF_AUDIT, succeeds: true },
  'post /api/v1/teams': {
    kind: 'admin',
    allowed: ADMINS,
    succeeds: true,
    body: () => ({ name: uniq('team') }),
  },
  'get /api/v1/teams/{id}': { kind: 'admin', allowed: READERS_OF_AUDIT },
  'patch /api/v1/teams/{id}': { kind: 'admin', allowed: ADMINS, body: () => ({ name: uniq('t') }) },
  'delete /api/v1/teams/{id}': { kind: 'admin', allowed: ADMINS },
  'put /api/v1/teams/{id}/members/{userId}': { kind: 'admin', allowed: ADMINS },
  'delete /api/v1/teams/{id}/members/{userId}': { kind: 'admin', allowed: ADMINS },
  'get /api/v1/permissions/explain': {
    kind: 'admin',
    allowed: READERS_OF_AUDIT,
    succeeds: true,
    query: 'resource=contact&action=read&field=nationalId',
  },
  'get /api/v1/tenant/settings': { kind: 'admin', allowed: ADMINS, succeeds: true },
  'patch /api/v1/tenant/settings': {
    kind: 'admin',
    allowed: ADMINS,
    succeeds: true,
    body: () => ({ sessionIdleMinutes: 30 }),
  },
  'get /api/v1/api-keys': { kind: 'admin', allowed: ADMINS, succeeds: true },
  'post /api/v1/api-keys': {
    kind: 'admin',
    allowed: ADMINS,
    succeeds: true,
    body: () => ({ name: uniq('key'), role: 'viewer' }),
  },
  'delete /api/v1/api-keys/{id}': { kind: 'admin', allowed: ADMINS },
  'get /api/v1/audit/events': { kind: 'admin', allowed: READERS_OF_AUDIT, succeeds: true },
  'get /api/v1/audit/checkpoints/latest': { kind: 'admin', allowed: READERS_OF_AUDIT },
  'get /api/v1/audit/proofs/inclusion': {
    kind: 'admin',
    allowed: READERS_OF_AUDIT,
    query: 'leafIndex=0&treeSize=1',
  },
  'get /api/v1/audit/proofs/consistency': {
    kind: 'admin',
    allowed: READERS_OF_AUDIT,
    query: 'from=1&to=1',
  },
  'get /api/v1/audit/public-key': { kind: 'admin', allowed: READERS_OF_AUDIT, succeeds: true },
  'get /api/v1/reports/security': { kind: 'admin', allowed: READERS_OF_AUDIT, succeeds: true },
  'get /api/v1/audit/settings': { kind: 'admin', allowed: ADMINS, succeeds: true },
  'patch /api/v1/audit/settings': {
    kind: 'admin',
    allowed: ADMINS,
    succeeds: true,
    body: () => ({ recordReads: false }),
  },
  'post /api/v1/audit/legal-hold': {
    kind: 'admin',
    allowed: ADMINS,
    body: () => ({ reason: 'CASE-1' }),
  },
  'post /api/v1/audit/legal-hold/release': {
    kind: 'admin',
    allowed: ADMINS,
    body: () => ({ reason: 'CASE-1' }),
  },
  'get /api/v1/alerts': { kind: 'admin', allowed: ADMINS, succeeds: true },
  'post /api/v1/alerts/{id}/acknowledge': { kind: 'admin', allowed: ADMINS },
  'post /api/v1/alerts/{id}/resolve': { kind: 'admin', allowed: ADMINS },
  'get /api/v1/detection/settings': { kind: 'admin', allowed: ADMINS, succeeds: true },
  'patch /api/v1/detection/settings': {
    kind: 'admin',
    allowed: ADMINS,
    succeeds: true,
    body: () => ({ rules: { brute_force: { enabled: true } } }),
  },
  'get /api/v1/contacts/export': { kind: 'export' },
  'post /api/v1/contacts/export': {
    kind: 'admin',
    allowed: EXPORTS,
    succeeds: true,
    body: () => ({ recipientKey }),
  },
  'post /api/v1/contacts/import': { kind: 'admin', allowed: EXPORTS, csv: 'firstName\nImported\n' },
  // Reveal answers only for fields the role sees masked and may reveal: of the built-in roles,
  // the agent's sensitive fields (owner, admin and manager read them in full, viewer and auditor
  // may not reveal). An unknown record is then 404; record scope is in reveal.test.ts.
  'post /api/v1/contacts/{id}/reveal': {
    kind: 'admin',
    allowed: ['agent'],
    body: () => ({ fields: ['nationalId'], reason: 'Customer asked to verify, ticket 1' }),
  },
  // The break_glass capability: owners and admins of the built-in roles (custom roles may have it).
  'post /api/v1/break-glass': {
    kind: 'admin',
    allowed: ADMINS,
    succeeds: true,
    body: () => ({ reason: 'Matrix: emergency access for the test run', minutes: 1 }),
  },
  'get /api/v1/break-glass': { kind: 'admin', allowed: ADMINS, succeeds: true },
  'delete /api/v1/break-glass/{id}': { kind: 'admin', allowed: ADMINS },
  ...recordRows('contacts', 'contact'),
  ...recordRows('companies', 'company'),
  ...recordRows('deals', 'deal'),
  ...recordRows('activities', 'activity'),
};

let ctx: TestContext;
let owner: Session;
let stranger: Session;
const as = new Map<Role, Session>();
let colleague: Session;
let otherTeam: Session;
let operations: Array<{ key: string; path: string; method: string }> = [];

async function inject(s: Session | null, method: string, url: string, payload?: object | string) {
  return ctx.app.inject({
    method: method.toUpperCase() as 'GET',
    url,
    headers: {
      ...(s?.headers ?? {}),
      ...(method === 'patch' ? { 'if-match': '"1"' } : {}),
      ...(typeof payload === 'string' ? { 'content-type': 'text/csv' } : {}),
    },
    ...(payload === undefined ? {} : { payload }),
  });
}

/** A request from the client address `ip`, signed in as `s` or anonymous (null). */
function from(s: Session | null, ip: string, method: string, url: string, payload?: object) {
  return ctx.app.inject({
    method: method.toUpperCase() as 'GET',
    url,
    remoteAddress: ip,
    headers: s?.headers ?? {},
    ...(payload === undefined ? {} : { payload }),
  });
}

/** For the public operations: a user with only a password, and one with a passkey. */
let signer: Session;
let target: Session;
let targetKey: SoftwareAuthenticator;

type PasskeyRequest = { challenge: string; rpId?: string };

async function passkeyOptions(c: Session | null, ip: string, url: string, payload: object) {
  const res = await from(c, ip, 'post', url, payload);
  expect(res.statusCode, `${url}: ${res.body}`).toBe(200);
  return res.json<PasskeyRequest>();
}

const signIn = (c: Session | null, ip: string, who: Session, password: string) =>
  from(c, ip, 'post', '/api/v1/auth/login', { tenant: who.tenant, email: who.email, password });

/** The mfaToken of the passkey user's password sign-in. */
async function mfaTokenOf(c: Session | null, ip: string): Promise<string> {
  const res = await signIn(c, ip, target, PASSWORD);
  expect(res.statusCode, res.body).toBe(200);
  return res.json<{ mfaToken: string }>().mfaToken;
}

async function created(s: Session, url: string, payload: object): Promise<{ id: string }> {
  const res = await inject(s, 'post', url, payload);
  if (res.statusCode !== 201) throw new Error(`setup ${url}: ${res.statusCode} ${res.body}`);
  return res.json();
}

const BODIES: Record<string, (s: Session) => Promise<object>> = {
  contact: async () => ({ firstName: 'Ada', nationalId: '123-45-6789' }),
  company: async () => ({ name: 'Acme' }),
  deal: async () => ({ name: 'Pilot', amountMinor: 100 }),
  activity: async (s) => ({
    type: 'call',
    subject: 'Call',
    contactId: (await created(s, '/api/v1/contacts', { firstName: 'Linked' })).id,
  }),
};
const CHANGES: Record<string, object> = {
  contact: { title: 'Dr' },
  company: { industry: 'Health' },
  deal: { stage: 'won' },
  activity: { subject: 'Follow-up' },
};
/**
 * The link a create body sets, by resource: it must name a record the caller reaches (read), or
 * the create is refused 400 resource.invalid_reference, exactly like a link to no record (no
 * existence oracle). So creates of these run once per relation, linking to that relation's record.
 */
const LINKS: Record<string, { field: string; resource: string } | undefined> = {
  activity: { field: 'contactId', resource: 'contact' },
  deal: { field: 'companyId', resource: 'company' },
};
const PATHS: Record<string, string> = {
  contact: 'contacts',
  company: 'companies',
  deal: 'deals',
  activity: 'activities',
};

/** A record of `resource` owned by whoever `relation` names for `caller`. */
async function recordFor(resource: string, caller: Role, relation: Relation) {
  const path = `/api/v1/${PATHS[resource]}`;
  if (relation === 'otherTenant') return created(stranger, path, await BODIES[resource]!(stranger));
  const ownerOf = {
    own: as.get(caller)!,
    colleague: colleague,
    otherTeam: otherTeam,
  }[relation];
  return created(owner, path, { ...(await BODIES[resource]!(owner)), ownerId: ownerOf.userId });
}

beforeAll(async () => {
  ctx = await createTestContext();
  owner = await ctx.tenant();
  stranger = await ctx.tenant();
  as.set('owner', owner);
  for (const role of ROLES) if (role !== 'owner') as.set(role, await ctx.user(owner, role));
  colleague = await ctx.user(owner, 'agent');
  otherTeam = await ctx.user(owner, 'agent');
  const team = await created(owner, '/api/v1/teams', { name: 'Blue' });
  const other = await created(owner, '/api/v1/teams', { name: 'Red' });
  for (const s of [...as.values(), colleague]) {
    const res = await inject(owner, 'put', `/api/v1/teams/${team.id}/members/${s.userId}`);
    expect(res.statusCode).toBe(200);
  }
  await inject(owner, 'put', `/api/v1/teams/${other.id}/members/${otherTeam.userId}`);
  const doc = (await inject(owner, 'get', '/api/v1/openapi.json')).json<{
    paths: Record<string, Record<string, unknown>>;
  }>();
  operations = Object.entries(doc.paths).flatMap(([path, ops]) =>
    Object.keys(ops).map((method) => ({ key: `${method} ${path}`, path, method })),
  );
}, 120_000);
afterAll(async () => ctx?.close());

describe('the authorization matrix', () => {
  it('has an expectation for every operation of the OpenAPI document', () => {
    expect(operations.length).toBeGreaterThan(50);
    const unknown = operations.map((o) => o.key).filter((k) => !(k in EXPECTATIONS));
    expect(unknown).toEqual([]);
  });

  it.each(ROLES)('answers every record operation as expected for %s', async (role) => {
    const me = as.get(role)!;
    const cells: string[] = [];
    for (const op of operations) {
      const e = EXPECTATIONS[op.key];
      if (e?.kind !== 'record') continue;
      const path = `/api/v1/${PATHS[e.resource]}`;
      if (e.op === 'create') {
        const link = LINKS[e.resource];
        if (link === undefined) {
          const res = await inject(me, 'post', path, await BODIES[e.resource]!(owner));
          expect(res.statusCode, `${role} ${op.key}`).toBe(WRITES[role] ? 201 : 403);
          cells.push(op.key);
          continue;
        }
        for (const relation of RELATIONS) {
          const linked = await recordFor(link.resource, role, relation);
          const body = { ...(await BODIES[e.resource]!(owner)), [link.field]: linked.id };
          const res = await inject(me, 'post', path, body);
          const label = `${role} ${op.key} linking a ${link.resource} of ${relation}: ${res.body}`;
          const [status, code]: [number, string?] = !WRITES[role]
            ? [403, 'policy.forbidden']
            : REACH[role].includes(relation)
              ? [201, undefined]
              : [400, 'resource.invalid_reference'];
          expect(res.statusCode, label).toBe(status);
          if (code !== undefined) expect(res.json().code, label).toBe(code);
          cells.push(`${op.key} ${relation}`);
        }
        continue;
      }
      if (e.op === 'list') {
        // One record per relation; the list shows exactly those the role reaches.
        const ids = new Map<Relation, string>();
        for (const relation of RELATIONS) {
          ids.set(relation, (await recordFor(e.resource, role, relation)).id);
        }
        const seen = new Set<string>();
        let cursor: string | null = null;
        do {
          const url: string = `${path}?limit=100${cursor ? `&cursor=${cursor}` : ''}`;
          const res = await inject(me, 'get', url);
          expect(res.statusCode, `${role} ${op.key}`).toBe(200);
          const page = res.json<{ items: { id: string }[]; nextCursor: string | null }>();
          for (const item of page.items) seen.add(item.id);
          cursor = page.nextCursor;
        } while (cursor);
        for (const relation of RELATIONS) {
          expect(seen.has(ids.get(relation)!), `${role} lists ${relation} ${e.resource}`).toBe(
            REACH[role].includes(relation),
          );
        }
        cells.push(op.key);
        continue;
      }
      for (const relation of RELATIONS) {
        const record = await recordFor(e.resource, role, relation);
        const url = `${path}/${record.id}`;
        const res =
          e.op === 'get'
            ? await inject(me, 'get', url)
            : e.op === 'update'
              ? await inject(me, 'patch', url, CHANGES[e.resource])
              : await inject(me, 'delete', url);
        const reaches = REACH[role].includes(relation);
        const may = e.op === 'get' || WRITES[role];
        const ok = { get: 200, update: 200, delete: 204 }[e.op];
        const label = `${role} ${op.key} on a record of ${relation}`;
        if (!may) expectCode(res, 403, 'policy.forbidden');
        else if (!reaches) expectCode(res, 404, 'resource.not_found');
        else expect(res.statusCode, `${label}: ${res.body}`).toBe(ok);
        cells.push(`${op.key} ${relation}`);
      }
    }
    const linking = Object.keys(PATHS).filter((r) => LINKS[r] !== undefined).length;
    expect(cells.length).toBe(4 * (2 + 3 * RELATIONS.length) + linking * (RELATIONS.length - 1));
  });

  it.each(ROLES)('answers every administrative operation as expected for %s', async (role) => {
    const me = as.get(role)!;
    let ran = 0;
    for (const op of operations) {
      const e = EXPECTATIONS[op.key];
      if (e?.kind !== 'admin' && e?.kind !== 'self' && e?.kind !== 'export') continue;
      if (e.kind === 'self' && e.write) continue;
      // Ids: another tenant's user where a user is named, otherwise one that does not exist.
      const url =
        op.path
          .replace('/users/{id}', `/users/${stranger.userId}`)
          .replace('{id}', missing)
          .replace('{userId}', stranger.userId) +
        (e.kind === 'admin' && e.query
          ? `?${e.query}${op.path.includes('explain') ? `&userId=${me.userId}` : ''}`
          : '');
      const body = e.kind === 'admin' ? (e.csv ?? e.body?.()) : undefined;
      const res = await inject(me, op.method, url, body);
      const label = `${role} ${op.key}: ${res.body}`;
      if (e.kind === 'self') expect(res.statusCode, label).toBe(200);
      else if (e.kind === 'export') {
        expect(res.statusCode, label).toBe(EXPORTS.includes(role) ? 200 : 403);
      } else if (!e.allowed.includes(role)) {
        expect(res.statusCode, label).toBe(403);
      } else if (e.succeeds) {
        expect(res.statusCode, label).toBeLessThan(300);
      } else {
        expect([401, 403], label).not.toContain(res.statusCode);
        if (op.path.includes('/users/{id}')) expect(res.statusCode, label).toBe(404);
      }
      ran++;
    }
    expect(ran).toBeGreaterThan(40);
  });
});

describe('mass assignment', () => {
  it('refuses a tenantId, a role or an unknown field in a body, naming it', async () => {
    for (const [field, value] of [
      ['tenantId', stranger.tenantId],
      ['role', 'owner'],
      ['version', 7],
    ] as const) {
      const res = await inject(as.get('agent')!, 'post', '/api/v1/contacts', {
        firstName: 'Eve',
        [field]: value,
      });
      expectCode(res, 400, 'request.invalid');
      expect(JSON.stringify(res.json().errors)).toContain(field);
    }
  });

  it('lets an agent own what they create but not give it to someone else', async () => {
    const agent = as.get('agent')!;
    const mine = await inject(agent, 'post', '/api/v1/contacts', {
      firstName: 'Self',
      ownerId: agent.userId,
    });
    expect(mine.statusCode).toBe(201);
    const given = await inject(agent, 'post', '/api/v1/contacts', {
      firstName: 'Gift',
      ownerId: colleague.userId,
    });
    expectCode(given, 403, 'policy.field_not_writable');
    expect(given.json().errors).toEqual([
      { field: 'body/ownerId', reason: 'may not be written by your role' },
    ]);
    const moved = await inject(agent, 'patch', `/api/v1/contacts/${mine.json().id}`, {
      ownerId: colleague.userId,
    });
    expectCode(moved, 403, 'policy.field_not_writable');
    const after = await inject(agent, 'get', `/api/v1/contacts/${mine.json().id}`);
    expect(after.json()).toMatchObject({ ownerId: agent.userId, version: 1 });
  });

  it('lets a manager assign owners', async () => {
    const res = await inject(as.get('manager')!, 'post', '/api/v1/deals', {
      name: 'Handover',
      ownerId: colleague.userId,
    });
    expect(res.statusCode).toBe(201);
    expect(res.json().ownerId).toBe(colleague.userId);
  });

  it('refuses a field the caller’s custom role may not write, and nothing changes', async () => {
    const role = await created(owner, '/api/v1/roles', {
      name: uniq('no-notes'),
      spec: { base: 'agent', fields: { 'contact.notes': { read: 'masked', write: false } } },
    });
    const user = await ctx.user(owner, 'agent');
    const assigned = await inject(owner, 'put', `/api/v1/users/${user.userId}/custom-role`, {
      roleId: role.id,
    });
    expect(assigned.statusCode).toBe(200);
    const res = await inject(user, 'post', '/api/v1/contacts', {
      firstName: 'Noted',
      notes: 'free text',
      title: 'Ms',
    });
    expectCode(res, 403, 'policy.field_not_writable');
    expect(res.json().errors).toEqual([
      { field: 'body/notes', reason: 'may not be written by your role' },
    ]);
    const list = await inject(user, 'get', '/api/v1/contacts');
    expect(list.json().items).toEqual([]);
  });

  it('refuses a role above the caller’s own for users and keys', async () => {
    const admin = as.get('admin')!;
    const res = await inject(admin, 'patch', `/api/v1/users/${as.get('agent')!.userId}`, {
      role: 'owner',
    });
    expectCode(res, 403, 'user.role_not_allowed');
    const key = await inject(admin, 'post', '/api/v1/api-keys', { name: 'k', role: 'owner' });
    expectCode(key, 403, 'api_key.role_not_allowed');
  });
});

/** A throwaway user of one role, signed in, and what its account writes leave for the next. */
interface Account {
  s: Session;
  password: string;
  key: SoftwareAuthenticator;
  creation?: { challenge: string; rp: { id?: string }; user: { id: string } };
  passkeyId?: string;
  request?: PasskeyRequest;
  secret?: string;
}

const own = (a: Account, method: string, url: string, payload?: object) =>
  inject(a.s, method, url, payload);
const sessionsOf = async (a: Account) =>
  (await own(a, 'get', '/api/v1/auth/sessions')).json<{
    items: { id: string; current: boolean }[];
  }>().items;

/**
 * Every write to one's own account, in an order where each finds what it needs (a passkey to
 * rename, TOTP to regenerate codes for, another session to end), each with a valid body and the
 * answer of a success: the permission layer lets every role through. The account starts stale
 * (past the step-up window), so the first write is the step-up the others need.
 */
const SELF_WRITES: Array<{ key: string; status: number; run(a: Account): Promise<Response> }> = [
  { key: 'post /api/v1/auth/step-up', status: 200, run: (a) => ctx.stepUp(a.s, a.password) },
  {
    key: 'post /api/v1/auth/passkeys/registration/options',
    status: 200,
    run: async (a) => {
      const res = await own(a, 'post', '/api/v1/auth/passkeys/registration/options');
      a.creation = res.json();
      return res;
    },
  },
  {
    key: 'post /api/v1/auth/passkeys/registration',
    status: 201,
    run: async (a) => {
      const res = await own(a, 'post', '/api/v1/auth/passkeys/registration', {
        credential: a.key.register(a.creation!),
        name: 'Matrix key',
      });
      a.passkeyId = res.json<{ id: string }>().id;
      return res;
    },
  },
  {
    key: 'patch /api/v1/auth/passkeys/{id}',
    status: 200,
    run: (a) => own(a, 'patch', `/api/v1/auth/passkeys/${a.passkeyId}`, { name: 'Renamed' }),
  },
  {
    key: 'post /api/v1/auth/step-up/passkey-options',
    status: 200,
    run: async (a) => {
      const res = await own(a, 'post', '/api/v1/auth/step-up/passkey-options');
      a.request = res.json();
      return res;
    },
  },
  {
    key: 'post /api/v1/auth/step-up',
    status: 200,
    run: (a) => ctx.stepUp(a.s, { passkey: a.key.assert(a.request!) }),
  },
  {
    key: 'post /api/v1/auth/mfa/totp',
    status: 200,
    run: async (a) => {
      const res = await own(a, 'post', '/api/v1/auth/mfa/totp');
      a.secret = res.json<{ secret: string }>().secret;
      return res;
    },
  },
  {
    key: 'post /api/v1/auth/mfa/totp/confirm',
    status: 200,
    run: (a) =>
      own(a, 'post', '/api/v1/auth/mfa/totp/confirm', {
        code: TOTP.generate({
          secret: Secret.fromBase32(a.secret!),
          timestamp: ctx.clock.now().getTime(),
        }),
      }),
  },
  {
    key: 'post /api/v1/auth/mfa/recovery-codes',
    status: 200,
    run: (a) => own(a, 'post', '/api/v1/auth/mfa/recovery-codes'),
  },
  {
    key: 'delete /api/v1/auth/mfa/totp',
    status: 204,
    run: (a) => own(a, 'delete', '/api/v1/auth/mfa/totp', { password: a.password }),
  },
  {
    key: 'delete /api/v1/auth/passkeys/{id}',
    status: 204,
    run: (a) => own(a, 'delete', `/api/v1/auth/passkeys/${a.passkeyId}`),
  },
  {
    key: 'delete /api/v1/auth/sessions/{id}',
    status: 204,
    run: async (a) => {
      await ctx.login(a.s.tenant, a.s.email, a.password);
      const other = (await sessionsOf(a)).find((s) => !s.current);
      return own(a, 'delete', `/api/v1/auth/sessions/${other?.id ?? missing}`);
    },
  },
  {
    key: 'post /api/v1/auth/sessions/revoke-others',
    status: 200,
    run: async (a) => {
      const other = await ctx.login(a.s.tenant, a.s.email, a.password);
      const res = await own(a, 'post', '/api/v1/auth/sessions/revoke-others');
      expect(res.json()).toEqual({ revoked: 1 });
      expect((await inject(other, 'get', '/api/v1/auth/me')).statusCode).toBe(401);
      return res;
    },
  },
  {
    key: 'post /api/v1/auth/password',
    status: 200,
    run: async (a) => {
      const res = await own(a, 'post', '/api/v1/auth/password', {
        currentPassword: a.password,
        newPassword: NEW_PASSWORD,
      });
      if (res.statusCode === 200) {
        renewSession(a.s, res);
        a.password = NEW_PASSWORD;
      }
      return res;
    },
  },
  {
    key: 'post /api/v1/auth/email',
    status: 202,
    run: (a) => own(a, 'post', '/api/v1/auth/email', { email: `${uniq('moved')}@example.com` }),
  },
  {
    key: 'post /api/v1/auth/logout',
    status: 204,
    run: async (a) => {
      const res = await own(a, 'post', '/api/v1/auth/logout');
      expect((await own(a, 'get', '/api/v1/auth/me')).statusCode).toBe(401);
      return res;
    },
  },
];

describe('the caller’s own account and the public operations', () => {
  const accounts = new Map<Role, Account>();
  beforeAll(async () => {
    for (const role of ROLES) {
      accounts.set(role, {
        s: await ctx.user(owner, role),
        password: PASSWORD,
        key: SoftwareAuthenticator.create(),
      });
    }
    signer = await ctx.user(owner, 'agent');
    target = await ctx.user(owner, 'agent');
    targetKey = SoftwareAuthenticator.create();
    const options = await inject(target, 'post', '/api/v1/auth/passkeys/registration/options');
    const registered = await inject(target, 'post', '/api/v1/auth/passkeys/registration', {
      credential: targetKey.register(options.json()),
    });
    expect(registered.statusCode, registered.body).toBe(201);
    // Every throwaway account is now past the step-up window.
    ctx.clock.advance(FRESH_AUTH_MS + 1000);
  }, 120_000);

  it('runs every write to one’s own account', () => {
    const writes = operations
      .map((o) => o.key)
      .filter((k) => {
        const e = EXPECTATIONS[k];
        return e?.kind === 'self' && e.write;
      });
    expect(writes.length).toBeGreaterThan(10);
    expect([...new Set(SELF_WRITES.map((w) => w.key))].sort()).toEqual(writes.sort());
  });

  it.each(ROLES)('lets %s make every change to their own account', async (role) => {
    const a = accounts.get(role)!;
    expectCode(await own(a, 'post', '/api/v1/auth/mfa/totp'), 401, 'auth.step_up_required');
    for (const write of SELF_WRITES) {
      const res = await write.run(a);
      expect(res.statusCode, `${role} ${write.key}: ${res.body}`).toBe(write.status);
    }
  });

  it.each(Object.entries(EXPECTATIONS).filter(([, e]) => e.kind === 'public'))(
    'answers %s the same, anonymous and for every role',
    async (key, e) => {
      if (e.kind !== 'public') throw new TypeError(key);
      const callers: Array<[string, Session | null]> = [
        ['anonymous', null],
        ...ROLES.map((r): [string, Session] => [r, as.get(r)!]),
      ];
      const answers = new Map<string, Record<string, { status: number; code?: string }>>();
      for (const [i, [name, caller]] of callers.entries()) {
        // Each caller from its own address, so per-address budgets never tell them apart.
        const ip = `203.0.113.${i + 10}`;
        for (const c of e.cases) {
          const res = await c.run(caller, ip);
          const code = res.statusCode >= 400 ? res.json<{ code: string }>().code : undefined;
          answers.set(c.what, {
            ...answers.get(c.what),
            [name]: { status: res.statusCode, ...(code === undefined ? {} : { code }) },
          });
        }
      }
      for (const c of e.cases) {
        const expected = { status: c.status, ...(c.code === undefined ? {} : { code: c.code }) };
        expect(answers.get(c.what), `${key} with ${c.what}`).toEqual(
          Object.fromEntries(callers.map(([name]) => [name, expected])),
        );
      }
    },
  );
});
