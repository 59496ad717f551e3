import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AppError } from '../../src/errors.ts';
import { setupTenant } from '../../src/modules/tenants/service.ts';
import { createTestContext, type Session, type TestContext } from '../helpers/context.ts';

let ctx: TestContext;
let owner: Session;

beforeAll(async () => {
  ctx = await createTestContext();
  owner = await ctx.tenant('zentrix');
});
afterAll(async () => ctx?.close());

const createUser = (payload: { email: string; name: string; password: string }) =>
  ctx.app.inject({
    method: 'POST',
    url: '/api/v1/users',
    headers: owner.headers,
    payload: { role: 'agent', ...payload },
  });

describe('password policy on user creation', () => {
  it('refuses common, tenant-, e-mail- and name-derived passwords with distinct reasons', async () => {
    const cases: [string, string[]][] = [
      ['1qaz2wsx3edc4rfv', ['is a commonly used or breached password']],
      ['passwordpassword', ['is a commonly used or breached password']],
      [
        'zentrixzentrix2026',
        ["must not be built from the organisation's name or sign-in identifier"],
      ],
      [
        'Tenant zentrix 2026!',
        ["must not be built from the organisation's name or sign-in identifier"],
      ],
      ['maximilian.k@zentrix.example', ['must not be built from the e-mail address']],
      ['Maximilian Kowalczyk 1990', ["must not be built from the user's name"]],
    ];
    for (const [password, reasons] of cases) {
      const res = await createUser({
        email: 'maximilian.k@zentrix.example',
        name: 'Maximilian Kowalczyk',
        password,
      });
      expect(res.statusCode, password).toBe(400);
      expect(res.json().code).toBe('auth.password_rejected');
      expect(res.json().errors).toEqual(
        reasons.map((reason) => ({ field: 'body/password', reason })),
      );
      expect(res.body).not.toContain(password);
    }
  });

  it('accepts a long random passphrase', async () => {
    const res = await createUser({
      email: 'maximilian.k@zentrix.example',
      name: 'Maximilian Kowalczyk',
      password: 'velvet orbit 38 cactus drumline',
    });
    expect(res.statusCode).toBe(201);
  });
});

describe('password policy on setup', () => {
  it('refuses a tenant-derived owner password with auth.password_rejected and creates nothing', async () => {
    const error = await setupTenant(
      { db: ctx.database.handle.db, clock: ctx.clock, users: ctx.services.userCrypto },
      {
        slug: 'quorvex',
        name: 'Quorvex Labs',
        ownerEmail: 'boss@quorvex.example',
        ownerName: 'Boss',
        password: 'quorvexquorvexquorvex1',
      },
    ).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AppError);
    expect((error as AppError).code).toBe('auth.password_rejected');
    expect((error as AppError).errors).toEqual([
      {
        field: 'password',
        reason: "must not be built from the organisation's name or sign-in identifier",
      },
    ]);
    const row = await ctx.database.handle.db
      .selectFrom('tenants')
      .select('id')
      .where('slug', '=', 'quorvex')
      .executeTakeFirst();
    expect(row).toBeUndefined();
  });

  it('names the other fields with request.invalid when more than the password is wrong', async () => {
    const error = await setupTenant(
      { db: ctx.database.handle.db, clock: ctx.clock, users: ctx.services.userCrypto },
      { slug: 'Bad Slug', name: 'X', ownerEmail: 'x@x.example', ownerName: 'X', password: 'short' },
    ).catch((e: unknown) => e);
    expect((error as AppError).code).toBe('request.invalid');
    expect((error as AppError).errors?.map((e) => e.field)).toEqual(['tenant', 'password']);
  });
});
