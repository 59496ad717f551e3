import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestContext, type Session, type TestContext } from '../helpers/context.ts';

/**
 * Who may do what to each CRM object, as one table. A new object is covered by adding one row
 * to RESOURCES; a new role or credential by adding one entry to CALLERS.
 */

let ctx: TestContext;
let owner: Session;

interface ResourceRow {
  path: string;
  /**
   * A valid create body; may create what it links to (as the tenant owner), owned by `linkOwner`:
   * a link must name a record the caller may read, or it is refused like a missing one.
   */
  body(linkOwner: string): Promise<object>;
  /** A valid change. */
  change: object;
}

const post = async (s: Session, url: string, payload: object): Promise<{ id: string }> => {
  const res = await ctx.app.inject({ method: 'POST', url, headers: s.headers, payload });
  if (res.statusCode !== 201) throw new Error(`setup failed: ${res.statusCode} ${res.body}`);
  return res.json();
};

const RESOURCES: ResourceRow[] = [
  { path: 'contacts', body: async () => ({ firstName: 'Ada' }), change: { title: 'Dr' } },
  { path: 'companies', body: async () => ({ name: 'Acme' }), change: { industry: 'Health' } },
  {
    path: 'deals',
    body: async () => ({ name: 'Pilot', amountMinor: 100 }),
    change: { stage: 'won' },
  },
  {
    path: 'activities',
    body: async (linkOwner) => ({
      type: 'call',
      subject: 'Call',
      contactId: (
        await post(owner, '/api/v1/contacts', { firstName: 'Linked', ownerId: linkOwner })
      ).id,
    }),
    change: { subject: 'Follow-up' },
  },
];

type Operation = 'list' | 'create' | 'get' | 'update' | 'delete';
const OPERATIONS: Operation[] = ['list', 'create', 'get', 'update', 'delete'];

interface Caller {
  name: string;
  headers(): Promise<Record<string, string>>;
  /** Expected status per operation (same for every resource). */
  expect: Record<Operation, number>;
  code?: string;
  /** Whose records the caller's creates link to (default the owner's): ones it may read. */
  linkOwner?: () => Promise<string>;
}

const WRITER = { list: 200, create: 201, get: 200, update: 200, delete: 204 };
const READER = { list: 200, create: 403, get: 200, update: 403, delete: 403 };
// An agent reaches only their own records: the owner's answer as if they did not exist.
const OWN_SCOPE = { list: 200, create: 201, get: 404, update: 404, delete: 404 };
const NOBODY = { list: 401, create: 401, get: 401, update: 401, delete: 401 };

const sessions = new Map<string, Session>();
async function sessionFor(role: 'owner' | 'admin' | 'agent' | 'viewer'): Promise<Session> {
  if (role === 'owner') return owner;
  let s = sessions.get(role);
  if (!s) sessions.set(role, (s = await ctx.user(owner, role)));
  return s;
}
const keys = new Map<string, string>();
async function apiKey(role: 'viewer' | 'agent'): Promise<Record<string, string>> {
  let key = keys.get(role);
  if (!key) {
    const res = await ctx.app.inject({
      method: 'POST',
      url: '/api/v1/api-keys',
      headers: owner.headers,
      payload: { name: `${role} key`, role },
    });
    if (res.statusCode !== 201) throw new Error(`api key: ${res.statusCode} ${res.body}`);
    key = res.json<{ key: string }>().key;
    keys.set(role, key);
  }
  return { authorization: `Bearer ${key}` };
}

const CALLERS: Caller[] = [
  { name: 'owner', headers: async () => (await sessionFor('owner')).headers, expect: WRITER },
  { name: 'admin', headers: async () => (await sessionFor('admin')).headers, expect: WRITER },
  {
    name: 'agent',
    headers: async () => (await sessionFor('agent')).headers,
    expect: OWN_SCOPE,
    code: 'resource.not_found',
    linkOwner: async () => (await sessionFor('agent')).userId,
  },
  {
    name: 'viewer',
    headers: async () => (await sessionFor('viewer')).headers,
    expect: READER,
    code: 'policy.forbidden',
  },
  {
    name: 'no credentials',
    headers: async () => ({}),
    expect: NOBODY,
    code: 'auth.unauthenticated',
  },
  {
    name: "a viewer's API key",
    headers: () => apiKey('viewer'),
    expect: READER,
    code: 'policy.forbidden',
  },
  // Made by the owner: its own scope is the owner's records, which these are.
  { name: "an agent's API key", headers: () => apiKey('agent'), expect: WRITER },
  {
    name: 'a malformed bearer key',
    headers: async () => ({ authorization: 'Bearer custos_nope_nope' }),
    expect: NOBODY,
    code: 'auth.api_key_invalid',
  },
];

beforeAll(async () => {
  ctx = await createTestContext();
  owner = await ctx.tenant();
});
afterAll(async () => ctx?.close());

describe.each(RESOURCES)('/api/v1/$path', (resource) => {
  const base = `/api/v1/${resource.path}`;

  describe.each(CALLERS)('as $name', (caller) => {
    it.each(OPERATIONS)('%s answers the expected status', async (op) => {
      const headers = await caller.headers();
      // Each cell works on its own record, made by the owner.
      const record = await post(owner, base, await resource.body(owner.userId));
      const linkOwner = (await caller.linkOwner?.()) ?? owner.userId;
      const requests = {
        list: { method: 'GET', url: base },
        create: { method: 'POST', url: base, payload: await resource.body(linkOwner) },
        get: { method: 'GET', url: `${base}/${record.id}` },
        update: {
          method: 'PATCH',
          url: `${base}/${record.id}`,
          payload: resource.change,
          headers: { 'if-match': '"1"' },
        },
        delete: { method: 'DELETE', url: `${base}/${record.id}` },
      } as const;
      const { headers: extra, ...request } = { headers: {}, ...requests[op] };
      const res = await ctx.app.inject({ ...request, headers: { ...headers, ...extra } });
      const expected = caller.expect[op];
      expect(res.statusCode, res.body).toBe(expected);
      if (expected >= 400) {
        expect(res.headers['content-type']).toContain('application/problem+json');
        expect(res.json().code).toBe(caller.code);
      }
      // A refused write leaves the record as it was; an allowed one changed it.
      const after = await ctx.app.inject({ url: `${base}/${record.id}`, headers: owner.headers });
      if (op === 'delete') expect(after.statusCode).toBe(expected === 204 ? 404 : 200);
      else expect(after.json().version).toBe(op === 'update' && expected === 200 ? 2 : 1);
    });
  });
});
