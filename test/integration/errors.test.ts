import type { LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestContext, type Session, type TestContext } from '../helpers/context.ts';

let ctx: TestContext;
let owner: Session;

beforeAll(async () => {
  ctx = await createTestContext();
  owner = await ctx.tenant();
});
afterAll(async () => ctx?.close());

const LEAKS = [
  /\bat .+:\d+:\d+/, // stack frame
  /node_modules|src\//,
  /\bselect\b.+\bfrom\b/i,
  /\binsert into\b/i,
  /SQLITE_|sqlite|postgres|kysely|better-sqlite3/i,
  /tenant_id|owner_id|email_normalized/,
];

/** The shape every error answer has (RFC 9457 + code + instance = request id), and no leaks. */
function expectProblem(res: LightMyRequestResponse, status: number, code: string) {
  expect(res.statusCode, res.body).toBe(status);
  expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
  const body = res.json<Record<string, unknown>>();
  expect(body).toMatchObject({ type: 'about:blank', status, code });
  expect(typeof body.title).toBe('string');
  expect(body.instance).toBe(res.headers['x-request-id']);
  expect(body.instance).toMatch(/^[0-9a-f-]{36}$/);
  expect(Object.keys(body).sort()).toEqual(
    expect.arrayContaining(['code', 'instance', 'status', 'title', 'type']),
  );
  expect(body).not.toHaveProperty('stack');
  expect(body).not.toHaveProperty('message');
  for (const pattern of LEAKS) expect(res.body).not.toMatch(pattern);
  return body;
}

const postContact = (payload: string, contentType = 'application/json', headers = owner.headers) =>
  ctx.app.inject({
    method: 'POST',
    url: '/api/v1/contacts',
    headers: { ...headers, 'content-type': contentType },
    payload,
  });

describe('error answers', () => {
  it('answers malformed JSON with 400 request.malformed_json', async () => {
    for (const payload of [
      '{',
      '{"firstName": }',
      "{'firstName': 'a'}",
      '{"a":1}}',
      'nul',
      '\u0000',
    ]) {
      expectProblem(await postContact(payload), 400, 'request.malformed_json');
    }
  });

  it('answers an empty body sent as JSON with 400 request.malformed_json', async () => {
    expectProblem(await postContact(''), 400, 'request.malformed_json');
    expectProblem(
      await postContact('', 'application/json; charset=utf-8'),
      400,
      'request.malformed_json',
    );
  });

  it('answers a JSON value that is not an object with 400 request.invalid', async () => {
    for (const payload of ['null', '[]', '"text"', '42']) {
      expectProblem(await postContact(payload), 400, 'request.invalid');
    }
  });

  it('answers an unsupported content type with 415 request.unsupported_media_type', async () => {
    for (const type of [
      'text/plain',
      'application/x-www-form-urlencoded',
      'multipart/form-data; boundary=x',
      'application/xml',
    ]) {
      expectProblem(await postContact('firstName=a', type), 415, 'request.unsupported_media_type');
    }
  });

  it('answers an unknown route with 404 request.route_not_found, signed in or not', async () => {
    for (const [method, url] of [
      ['GET', '/api/v1/nothing'],
      ['GET', '/api/v2/contacts'],
      ['PUT', '/api/v1/contacts'],
      ['POST', '/api/v1/contacts/01900000-0000-7000-8000-000000000000/x'],
    ] as const) {
      expectProblem(await ctx.app.inject({ method, url }), 404, 'request.route_not_found');
      const signedIn = await ctx.app.inject({ method, url, headers: owner.headers });
      expectProblem(signedIn, 404, 'request.route_not_found');
    }
  });

  it('answers the usual refusals in the same problem shape', async () => {
    expectProblem(await ctx.app.inject({ url: '/api/v1/contacts' }), 401, 'auth.unauthenticated');
    expectProblem(
      await ctx.app.inject({
        url: '/api/v1/contacts/01900000-0000-7000-8000-000000000000',
        headers: owner.headers,
      }),
      404,
      'resource.not_found',
    );
    expectProblem(
      await ctx.app.inject({ url: '/api/v1/contacts/1%27%20or%201=1--', headers: owner.headers }),
      400,
      'request.invalid',
    );
    expectProblem(
      await ctx.app.inject({
        method: 'POST',
        url: '/api/v1/contacts',
        headers: { cookie: owner.cookie },
        payload: { firstName: 'No CSRF token' },
      }),
      403,
      'auth.csrf_failed',
    );
  });

  it('uses a fresh request id per request and ignores one the client sends', async () => {
    const a = await ctx.app.inject({
      url: '/nope',
      headers: { 'x-request-id': 'attacker-chosen' },
    });
    const b = await ctx.app.inject({ url: '/nope' });
    expect(expectProblem(a, 404, 'request.route_not_found').instance).not.toBe('attacker-chosen');
    expect(a.headers['x-request-id']).not.toBe(b.headers['x-request-id']);
  });
});

describe('body limit', () => {
  let small: TestContext;
  let s: Session;
  beforeAll(async () => {
    small = await createTestContext({ CUSTOS_BODY_LIMIT: '2048' });
    s = await small.tenant();
  });
  afterAll(async () => small?.close());

  it('answers a body over CUSTOS_BODY_LIMIT with 413 request.too_large and stores nothing', async () => {
    const post = (notes: string) =>
      small.app.inject({
        method: 'POST',
        url: '/api/v1/contacts',
        headers: s.headers,
        payload: { notes },
      });
    const fits = await post('x'.repeat(1900));
    expect(fits.statusCode).toBe(201);
    const res = await post('x'.repeat(2100));
    expectProblem(res, 413, 'request.too_large');
    const list = await small.app.inject({ url: '/api/v1/contacts', headers: s.headers });
    expect(list.json().items).toHaveLength(1);
  });
});

describe('unexpected failures', () => {
  let broken: TestContext;
  let s: Session;
  beforeAll(async () => {
    broken = await createTestContext();
    s = await broken.tenant();
  });
  afterAll(async () => {
    if (!broken) return;
    // The app's handle is closed by the test below; close() must not close it a second time.
    broken.appDatabase.close = async () => undefined;
    await broken.close();
  });

  it('answers 500 server.internal without internals when the database is gone, logs it, and /readyz says 503', async () => {
    expect((await broken.app.inject({ url: '/readyz' })).statusCode).toBe(200);
    await broken.appDatabase.close();

    const res = await broken.app.inject({ url: '/api/v1/contacts', headers: s.headers });
    const body = expectProblem(res, 500, 'server.internal');
    expect(body.title).toBe('Internal error');
    expect(body).not.toHaveProperty('detail');
    expect(res.body).not.toMatch(/destroyed|driver|closed|TypeError|stack/i);

    const lines = broken.logs
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter((l) => l.reqId === body.instance && l.level === 50);
    expect(lines).toHaveLength(1);
    const line = lines[0]!;
    expect(line.code).toBe('server.internal');
    const err = line.err as { type: string; message: string; stack: string };
    expect(err.message).toMatch(/destroyed/i);
    expect(err.stack).toContain(err.type);
    expect(JSON.stringify(line)).not.toContain(s.cookie.split('=')[1]!);

    const ready = await broken.app.inject({ url: '/readyz' });
    expectProblem(ready, 503, 'server.unavailable');
    expect(ready.json().detail).toBe('The database is not reachable.');
    // Liveness is not readiness: the process is still alive.
    expect((await broken.app.inject({ url: '/healthz' })).statusCode).toBe(200);
  });
});

describe('readiness and the key store', () => {
  let ctx: TestContext | undefined;
  afterAll(async () => ctx?.close());

  it('answers /readyz 503 naming the key store when it is gone', async () => {
    ctx = await createTestContext();
    expect((await ctx.app.inject({ url: '/readyz' })).statusCode).toBe(200);
    await ctx.services.keys.close();
    const ready = await ctx.app.inject({ url: '/readyz' });
    expectProblem(ready, 503, 'server.unavailable');
    expect(ready.json().detail).toBe('The key store is not reachable.');
  });
});
