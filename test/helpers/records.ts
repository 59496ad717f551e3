import { setTimeout as sleep } from 'node:timers/promises';
import type { Kysely } from 'kysely';
import { expect } from 'vitest';
import type { Database } from '../../src/db/schema.ts';
import { censusOfValues } from '../../src/modules/records/reencrypt.ts';
import type { SealedSpec } from '../../src/modules/records/spec.ts';
import type { Session, TestContext } from './context.ts';

/**
 * The REST calls of one CRM resource, for the tests of companies, deals and activities: the
 * same five routes everywhere, so one client. `ctx` is read lazily (it is built in beforeAll).
 */
export function recordRoutes<T extends { id: string }>(ctx: () => TestContext, base: string) {
  const ifMatchHeader = (ifMatch?: string) =>
    ifMatch === undefined ? {} : { 'if-match': ifMatch };

  /** POST to any collection, expecting 201. */
  const post = async <R>(s: Session, url: string, payload: object): Promise<R> => {
    const res = await ctx().app.inject({ method: 'POST', url, headers: s.headers, payload });
    if (res.statusCode !== 201) throw new Error(`create failed: ${res.statusCode} ${res.body}`);
    return res.json<R>();
  };
  const create = (s: Session, payload: object) =>
    ctx().app.inject({ method: 'POST', url: base, headers: s.headers, payload });
  const made = (s: Session, payload: object) => post<T>(s, base, payload);
  const get = (s: Session, id: string) =>
    ctx().app.inject({ url: `${base}/${id}`, headers: s.headers });
  const patch = (s: Session, id: string, payload: object, ifMatch?: string) =>
    ctx().app.inject({
      method: 'PATCH',
      url: `${base}/${id}`,
      headers: { ...s.headers, ...ifMatchHeader(ifMatch) },
      payload,
    });
  const del = (s: Session, id: string, ifMatch?: string) =>
    ctx().app.inject({
      method: 'DELETE',
      url: `${base}/${id}`,
      headers: { ...s.headers, ...ifMatchHeader(ifMatch) },
    });

  /** Every id of a list, page by page, following nextCursor. */
  async function listAll(s: Session, query: string, limit = 2): Promise<string[]> {
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const url: string = `${base}?limit=${limit}${query ? `&${query}` : ''}${cursor ? `&cursor=${cursor}` : ''}`;
      const res = await ctx().app.inject({ url, headers: s.headers });
      expect(res.statusCode, res.body).toBe(200);
      const page = res.json<{ items: T[]; nextCursor: string | null }>();
      expect(page.items.length).toBeLessThanOrEqual(limit);
      seen.push(...page.items.map((r) => r.id));
      cursor = page.nextCursor;
      if (++pages > 50) throw new Error('pagination does not end');
    } while (cursor);
    return seen;
  }

  return { post, create, made, get, patch, del, listAll };
}

type Values = Record<string, unknown>;

/**
 * Calls that expect success, for tests that drive traffic through the API (key rotation): `post`
 * expects 201, `get` 200, and `patch` sends the record's current ETag and retries when another
 * writer changed it meanwhile (412), so concurrent workers never overwrite each other blindly;
 * `traffic` is one such worker, `expectAll` the final check.
 */
export function trafficClient(ctx: () => TestContext) {
  async function post(s: Session, url: string, payload: Values) {
    const res = await ctx().app.inject({ method: 'POST', url, headers: s.headers, payload });
    if (res.statusCode !== 201) throw new Error(`${url}: ${res.statusCode} ${res.body}`);
    return res.json<Values & { id: string; version: number }>();
  }

  async function get(s: Session, url: string) {
    const res = await ctx().app.inject({ url, headers: s.headers });
    if (res.statusCode !== 200) throw new Error(`${url}: ${res.statusCode} ${res.body}`);
    return res.json<Values & { version: number }>();
  }

  async function patch(s: Session, url: string, payload: Values) {
    for (;;) {
      const current = await get(s, url);
      const res = await ctx().app.inject({
        method: 'PATCH',
        url,
        headers: { ...s.headers, 'if-match': `"${current.version}"` },
        payload,
      });
      if (res.statusCode === 412) continue;
      if (res.statusCode !== 200) throw new Error(`${url}: ${res.statusCode} ${res.body}`);
      return res.json<Values>();
    }
  }

  /** Every record reads back through the API exactly as expected. */
  async function expectAll(s: Session, expected: Map<string, Values>) {
    for (const [url, values] of expected) expect(await get(s, url), url).toMatchObject(values);
  }

  /**
   * One of two traffic workers (1 or 2) running until `done()` and at least 3 rounds: each round
   * may create a contact or an activity (recorded in `expected` under its URL), edits one record
   * of the worker's own half of `expected` (one writer per record, so `expected` follows it) and
   * reads one of its own back against `expected`. Returns the number of rounds.
   */
  async function traffic(
    s: Session,
    expected: Map<string, Values>,
    worker: 1 | 2,
    done: () => boolean,
    inputs: { contact: () => Values; activity: () => Values },
  ): Promise<number> {
    const add = async (collection: string, input: Values) => {
      const made = await post(s, collection, input);
      expected.set(`${collection}/${made.id}`, input);
    };
    let i = 0;
    while (!done() || i < 3) {
      i += 1;
      if (i % 3 === 0) await add('/api/v1/contacts', inputs.contact());
      else if (i % 3 === 1) await add('/api/v1/activities', inputs.activity());
      const mine = [...expected.keys()].filter((_, k) => k % 2 === worker - 1);
      const target = mine[(i * 7) % mine.length] as string;
      const change = target.includes('/contacts/')
        ? { notes: `updated by ${worker} at ${i}` }
        : { body: `updated by ${worker} at ${i}` };
      await patch(s, target, change);
      expected.set(target, { ...expected.get(target), ...change });
      // Read one of this worker's own records: another worker's may change between the read
      // and the look at `expected` (its PATCH committed, its `expected.set` not yet run).
      const read = mine[(i * 13 + worker) % mine.length] as string;
      expect(await get(s, read), read).toMatchObject(expected.get(read) as Values);
      await sleep(1);
    }
    return i;
  }

  return { post, get, patch, expectAll, traffic };
}

/** The tenant key versions named by the tenant's stored values (a full census). */
export async function versionsInUse(
  db: Kysely<Database>,
  specs: readonly SealedSpec[],
  tenantId: string,
): Promise<number[]> {
  const census = await censusOfValues(db, specs, tenantId);
  return [...census.byVersion.entries()]
    .filter(([, count]) => count > 0)
    .map(([v]) => v)
    .sort();
}
