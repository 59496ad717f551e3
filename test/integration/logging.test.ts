import type { InjectOptions, LightMyRequestResponse } from 'fastify';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { createTestContext, PASSWORD, type TestContext } from '../helpers/context.ts';

/** Values that must never reach the log: personal data, passwords, session tokens, API keys. */
const marker = {
  email: 'zq.Logmarker.7731@Example.org',
  phone: '+1 415 555 0142',
  phoneE164: '+14155550142',
  phoneDigits: '4155550142',
  nationalId: 'NID-LOGMARK-5521',
  notes: 'NOTES-LOGMARK-9911 diagnosis: confidential',
  firstName: 'Firstname-Logmark',
  wrongPassword: 'wrong-password-LOGMARK-3310',
  unknownEmail: 'unknown.logmark.4471@example.net',
  driverDetail: 'Key (email)=(driver-detail-LOGMARK-0042) already exists.',
};

/** SQL text of the kind a driver error carries; it may reach the log but never a client. */
const SQL_TEXT =
  'select "id", "email" from "contacts" where "tenant_id" = $1 and "email_bidx" = $2';
const SQL_IN_BODY =
  /\bselect\b[^]*\bfrom\b|\binsert\s+into\b|\bdelete\s+from\b|\bupdate\s+"?\w+"?\s+set\b|\bwhere\s+"|\$1|constraint|sqlite|postgres|syntax error/i;

interface Scenario {
  responses: LightMyRequestResponse[];
  secrets: string[];
}

/** Drives requests that carry every kind of secret and personal value, and some failures. */
async function runScenario(ctx: TestContext): Promise<Scenario> {
  const owner = await ctx.tenant();
  const responses: LightMyRequestResponse[] = [];
  const send = async (options: InjectOptions) => {
    const res = await ctx.app.inject(options);
    responses.push(res);
    return res;
  };
  const login = (email: string, password: string) =>
    send({
      method: 'POST',
      url: '/api/v1/auth/login',
      headers: { 'user-agent': 'logging-test' },
      payload: { tenant: owner.tenant, email, password },
    });

  expect((await login(owner.email, marker.wrongPassword)).statusCode).toBe(401);
  expect((await login(marker.unknownEmail, PASSWORD)).statusCode).toBe(401);
  const ok = await login(owner.email, PASSWORD);
  expect(ok.statusCode).toBe(200);
  const token = ok.cookies.find((c) => c.name === '__Host-custos_session')!.value;
  const csrfToken = ok.json<{ csrfToken: string }>().csrfToken;
  const headers = { cookie: `__Host-custos_session=${token}`, 'x-csrf-token': csrfToken };

  const contact = {
    firstName: marker.firstName,
    email: marker.email,
    phone: marker.phone,
    nationalId: marker.nationalId,
    notes: marker.notes,
  };
  expect(
    (await send({ method: 'POST', url: '/api/v1/contacts', headers, payload: contact })).statusCode,
  ).toBe(201);
  // A real unique violation in the database (409).
  expect(
    (await send({ method: 'POST', url: '/api/v1/contacts', headers, payload: contact })).statusCode,
  ).toBe(409);
  const byEmail = await send({
    url: `/api/v1/contacts?email=${encodeURIComponent(marker.email)}&limit=5`,
    headers,
  });
  expect(byEmail.json<{ items: unknown[] }>().items).toHaveLength(1);
  const byPhone = await send({
    url: `/api/v1/contacts?phone=${encodeURIComponent(marker.phone)}`,
    headers,
  });
  expect(byPhone.json<{ items: unknown[] }>().items).toHaveLength(1);
  // Validation failures on personal values: bad e-mail, overlong phone filter.
  expect(
    (
      await send({
        method: 'POST',
        url: '/api/v1/contacts',
        headers,
        payload: { email: `${marker.nationalId} not an address` },
      })
    ).statusCode,
  ).toBe(400);
  expect(
    (
      await send({
        url: `/api/v1/contacts?phone=${marker.phoneDigits.repeat(8)}`,
        headers,
      })
    ).statusCode,
  ).toBe(400);

  // Values put in the path by a careless client (400 or 404, never logged).
  for (const value of [marker.email, marker.phone, marker.nationalId, marker.firstName]) {
    const res = await send({ url: `/api/v1/contacts/${encodeURIComponent(value)}`, headers });
    expect(res.statusCode).toBe(400);
  }
  expect(
    (await send({ url: `/api/v1/people/${encodeURIComponent(marker.email)}/notes`, headers }))
      .statusCode,
  ).toBe(404);

  const keyRes = await send({
    method: 'POST',
    url: '/api/v1/api-keys',
    headers,
    payload: { name: 'logging' },
  });
  const apiKey = keyRes.json<{ key: string }>().key;
  expect(apiKey).toMatch(/^custos_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$/);
  expect(
    (await send({ url: '/api/v1/contacts', headers: { authorization: `Bearer ${apiKey}` } }))
      .statusCode,
  ).toBe(200);
  const forgedKey = `${apiKey.slice(0, -4)}AAAA`;
  expect(
    (await send({ url: '/api/v1/contacts', headers: { authorization: `Bearer ${forgedKey}` } }))
      .statusCode,
  ).toBe(401);
  // Missing CSRF token (403).
  expect(
    (
      await send({
        method: 'POST',
        url: '/api/v1/contacts',
        headers: { cookie: headers.cookie },
        payload: { email: marker.email },
      })
    ).statusCode,
  ).toBe(403);
  // Malformed JSON (400).
  expect(
    (
      await send({
        method: 'POST',
        url: '/api/v1/auth/login',
        headers: { 'content-type': 'application/json' },
        payload: `{"tenant":"${owner.tenant}","password":"${marker.wrongPassword}"`,
      })
    ).statusCode,
  ).toBe(400);

  // A 500: the contact service fails the way a database driver does, with SQL in the message
  // and a row value in `detail` (as PostgreSQL reports constraint violations).
  const driverError = Object.assign(new Error(`query failed: ${SQL_TEXT}`), {
    code: '23505',
    detail: marker.driverDetail,
    where: `SQL statement "${SQL_TEXT}"`,
    parameters: [marker.email, marker.nationalId],
  });
  vi.spyOn(ctx.services.contacts, 'list').mockRejectedValueOnce(driverError);
  const failed = await send({
    url: `/api/v1/contacts?email=${encodeURIComponent(marker.email)}`,
    headers,
  });
  expect(failed.statusCode).toBe(500);
  expect(failed.body).not.toContain('query failed');

  return {
    responses,
    secrets: [
      marker.email,
      marker.email.toLowerCase(),
      encodeURIComponent(marker.email),
      marker.phone,
      marker.phoneE164,
      marker.phoneDigits,
      marker.nationalId,
      'LOGMARK',
      marker.firstName,
      marker.notes,
      marker.wrongPassword,
      marker.unknownEmail,
      PASSWORD,
      owner.email,
      token,
      csrfToken,
      apiKey,
      // The secret part (base64url, so it may itself contain "_").
      apiKey.slice('custos_'.length + 12 + 1),
      forgedKey,
    ],
  };
}

type LogLine = Record<string, unknown> & { level: number; msg?: string; reqId?: string };

function checkLogs(ctx: TestContext, scenario: Scenario) {
  const lines = ctx.logs.map((l) => JSON.parse(l) as LogLine);
  // The scan below is only meaningful if the requests were logged at all.
  expect(lines.filter((l) => l.msg === 'request completed').length).toBeGreaterThanOrEqual(
    scenario.responses.length,
  );
  expect(ctx.logs.some((l) => l.includes('/api/v1/contacts?email=[redacted]&limit=5'))).toBe(true);
  expect(ctx.logs.some((l) => l.includes('/api/v1/people/[redacted]/notes'))).toBe(true);

  const all = ctx.logs.join('\n');
  for (const secret of scenario.secrets) {
    expect(all, `log contains ${secret}`).not.toContain(secret);
  }

  for (const res of scenario.responses.filter((r) => r.statusCode >= 400)) {
    const id = res.headers['x-request-id'];
    expect(res.json<{ instance: string }>().instance).toBe(id);
    const mine = lines.filter((l) => l.reqId === id);
    if (res.statusCode >= 500) {
      const error = mine.find((l) => l.level === 50);
      expect(error, `error line for ${res.statusCode}`).toBeDefined();
      expect(error).toMatchObject({ code: 'server.internal' });
    } else {
      const refused = mine.find((l) => l.msg === 'request refused');
      expect(refused, `refusal line for ${res.statusCode}`).toBeDefined();
      expect(refused).toMatchObject({ status: res.statusCode, code: res.json().code });
    }
    expect(mine.some((l) => l.msg === 'request completed')).toBe(true);
  }
}

function checkErrorBodies(scenario: Scenario) {
  const errors = scenario.responses.filter((r) => r.statusCode >= 400);
  expect(new Set(errors.map((r) => r.statusCode))).toEqual(new Set([400, 401, 403, 404, 409, 500]));
  for (const res of errors) {
    expect(res.headers['content-type']).toContain('application/problem+json');
    expect(res.body).not.toContain('    at ');
    expect(res.body).not.toMatch(/\.ts:\d+/);
    expect(res.body).not.toMatch(SQL_IN_BODY);
    // The 404 for an unknown route names the path the client itself sent; nothing else echoes.
    if (res.json<{ code: string }>().code === 'request.route_not_found') continue;
    for (const secret of scenario.secrets) expect(res.body).not.toContain(secret);
  }
}

describe('log redaction', () => {
  let ctx: TestContext;
  let scenario: Scenario;

  beforeAll(async () => {
    ctx = await createTestContext();
    scenario = await runScenario(ctx);
  });
  afterAll(async () => ctx?.close());
  afterEach(() => vi.restoreAllMocks());

  it('keeps personal values, passwords, session tokens and API keys out of the log', () => {
    checkLogs(ctx, scenario);
  });

  it('logs the 500 with its cause but without driver row values', () => {
    const error = ctx.logs.map((l) => JSON.parse(l) as LogLine).find((l) => l.level === 50);
    expect(error).toBeDefined();
    const err = error!.err as Record<string, unknown>;
    expect(err.message).toContain('query failed');
    expect(err.code).toBe('23505');
    expect(err).not.toHaveProperty('detail');
    expect(err).not.toHaveProperty('parameters');
  });

  it('answers errors with no stack trace, SQL or submitted secret values', () => {
    checkErrorBodies(scenario);
  });

  it('the SQL detector used above recognises SQL', () => {
    expect(SQL_TEXT).toMatch(SQL_IN_BODY);
    expect('insert into "contacts" ("id") values ($1)').toMatch(SQL_IN_BODY);
    expect('UNIQUE constraint failed: contacts.email').toMatch(SQL_IN_BODY);
    expect('Your role does not allow this action (update contact).').not.toMatch(SQL_IN_BODY);
  });
});

describe('log redaction at trace level', () => {
  it('keeps the same values out of the most verbose log', async () => {
    const ctx = await createTestContext({ CUSTOS_LOG_LEVEL: 'trace' });
    try {
      const scenario = await runScenario(ctx);
      checkLogs(ctx, scenario);
      checkErrorBodies(scenario);
    } finally {
      vi.restoreAllMocks();
      await ctx.close();
    }
  });
});
