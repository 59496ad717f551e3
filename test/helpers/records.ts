import { expect } from 'vitest';
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
 * writer changed it meanwhile (412), so concurrent workers never overwrite each other blindly.
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

  return { post, get, patch };
}
