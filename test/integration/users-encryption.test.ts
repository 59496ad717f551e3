import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { Migrator, type Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createManualClock } from '../../src/clock.ts';
import { loadConfig } from '../../src/config.ts';
import { createServices } from '../../src/compose.ts';
import { migrateToLatest } from '../../src/db/database.ts';
import { migrations } from '../../src/db/migrations/index.ts';
import { buildApp } from '../../src/http/app.ts';
import { newId } from '../../src/ids.ts';
import { hashPassword } from '../../src/modules/identity/passwords.ts';
import { assertKeysUsable, openKeys } from '../../src/modules/keys/open.ts';
import { classifyStored } from '../../src/modules/records/reencrypt.ts';
import { encryptClearUsers } from '../../src/modules/users/backfill.ts';
import { createUserCrypto } from '../../src/modules/users/crypto.ts';
import { createTestContext, PASSWORD, type Session, type TestContext } from '../helpers/context.ts';
import { createTestDatabase, testDatabaseUrl, type TestDatabase } from '../helpers/database.ts';
import { expectCode } from '../helpers/problem.ts';

/**
 * Users' e-mail and name at rest (issue 3, item 1): sealed like the CRM's personal fields, found
 * at sign-in by a blind index with candidates confirmed after decryption, unique per tenant
 * through a keyed hash, and users stored in clear by an older version sealed at start.
 */

let ctx: TestContext;
let owner: Session;

beforeAll(async () => {
  ctx = await createTestContext();
  owner = await ctx.tenant();
});
afterAll(async () => ctx?.close());

const marker = () => `um${randomBytes(6).toString('hex')}`;
const db = () => ctx.database.handle.db;
const storedUser = (id: string) =>
  db()
    .selectFrom('users')
    .select(['id', 'tenant_id', 'email', 'name', 'email_bidx', 'email_eq', 'version'])
    .where('id', '=', id)
    .executeTakeFirstOrThrow();
const createUser = (s: Session, email: string, name = 'Some One') =>
  ctx.app.inject({
    method: 'POST',
    url: '/api/v1/users',
    headers: s.headers,
    payload: { email, name, role: 'agent', password: PASSWORD },
  });

/** Every byte the SQLite files hold, or every row of every table on PostgreSQL, as text. */
async function rawStorage(database: TestDatabase): Promise<string> {
  if (!testDatabaseUrl) {
    const dir = database.dataDir;
    return fs
      .readdirSync(dir)
      .filter((f) => fs.statSync(path.join(dir, f)).isFile())
      .map((f) => fs.readFileSync(path.join(dir, f)).toString('latin1'))
      .join('\n');
  }
  const client = new pg.Client({ connectionString: database.url });
  await client.connect();
  try {
    const tables = await client.query<{ table_schema: string; table_name: string }>(
      `select table_schema, table_name from information_schema.tables
        where table_schema not in ('pg_catalog', 'information_schema') and table_type = 'BASE TABLE'`,
    );
    const parts: string[] = [];
    for (const t of tables.rows) {
      const rows = await client.query<{ r: string }>(
        `select t::text as r from "${t.table_schema}"."${t.table_name}" t`,
      );
      parts.push(...rows.rows.map((r) => r.r));
    }
    return parts.join('\n');
  } finally {
    await client.end();
  }
}

describe("users' e-mail and name at rest", () => {
  it('stores them as one sealed group with a blind index and a unique hash, and answers in clear', async () => {
    const m = marker();
    const res = await createUser(owner, `${m}@Example.com`, `${m} Name`);
    expect(res.statusCode).toBe(201);
    const { id } = res.json<{ id: string }>();
    const row = await storedUser(id);
    expect(row.email.startsWith('cv2.')).toBe(true);
    expect(row.name.startsWith('cv2.')).toBe(true);
    expect(classifyStored(row.email)).toMatchObject({ kind: 'sealed', keyVersion: 1 });
    expect(row.email_bidx).toMatch(/^[0-9a-f]{8}$/);
    expect(row.email_eq).toMatch(/^[0-9a-f]{64}$/);
    expect(JSON.stringify(row)).not.toContain(m);

    const got = await ctx.app.inject({ url: `/api/v1/users/${id}`, headers: owner.headers });
    expect(got.json()).toMatchObject({ email: `${m}@Example.com`, name: `${m} Name` });
    const list = await ctx.app.inject({ url: '/api/v1/users', headers: owner.headers });
    expect(list.json<{ items: { email: string }[] }>().items.map((u) => u.email)).toContain(
      `${m}@Example.com`,
    );
    // Sign-in normalises the address as the index does (trimmed, lower-cased).
    const agent = await ctx.login(owner.tenant, `  ${m.toUpperCase()}@example.COM `);
    const me = await ctx.app.inject({ url: '/api/v1/auth/me', headers: agent.headers });
    expect(me.json()).toMatchObject({ id, email: `${m}@Example.com`, name: `${m} Name` });

    // A rename seals the group again (new nonce), the index stays the e-mail's.
    const renamed = await ctx.app.inject({
      method: 'PATCH',
      url: `/api/v1/users/${id}`,
      headers: owner.headers,
      payload: { name: `${m} Renamed` },
    });
    expect(renamed.statusCode).toBe(200);
    const after = await storedUser(id);
    expect(after.email).not.toBe(row.email);
    expect(after.email_bidx).toBe(row.email_bidx);
    expect(JSON.stringify(after)).not.toContain(m);
    expect(renamed.json()).toMatchObject({ email: `${m}@Example.com`, name: `${m} Renamed` });
  });

  it("refuses a value copied from another user's row", async () => {
    const a = (await createUser(owner, `${marker()}@example.com`)).json<{ id: string }>();
    const b = (await createUser(owner, `${marker()}@example.com`)).json<{ id: string }>();
    const stolen = await storedUser(a.id);
    await db()
      .updateTable('users')
      .set({ email: stolen.email, name: stolen.name })
      .where('id', '=', b.id)
      .execute();
    const res = await ctx.app.inject({ url: `/api/v1/users/${b.id}`, headers: owner.headers });
    expectCode(res, 500, 'resource.integrity_failed');
    expect(res.body).not.toContain('cv2.');
  });

  it('keeps an e-mail unique per tenant through the keyed hash, not across tenants', async () => {
    const m = marker();
    expect((await createUser(owner, `${m}@example.com`)).statusCode).toBe(201);
    expectCode(await createUser(owner, `${m.toUpperCase()}@EXAMPLE.com`), 409, 'user.email_taken');
    const other = await ctx.tenant();
    expect((await createUser(other, `${m}@example.com`)).statusCode).toBe(201);
  });

  it('finds every user when the truncated index collides, confirming candidates after decryption', async () => {
    // An 8-bit index: 300 addresses in 256 values must share some.
    const users = createUserCrypto({ keys: ctx.services.keys, indexBits: 8 });
    const { tenantId } = await ctx.tenant();
    const now = new Date().toISOString();
    const made: { id: string; email: string }[] = [];
    for (let i = 0; i < 300; i += 1) {
      const id = newId();
      const email = `c${i}-${marker()}@collide.example`;
      made.push({ id, email });
      await db()
        .insertInto('users')
        .values({
          id,
          tenant_id: tenantId,
          ...(await users.seal(tenantId, id, { email, name: `C ${i}` })),
          role: 'viewer',
          status: 'disabled',
          password_hash: null,
          created_at: now,
          updated_at: now,
          version: 1,
        })
        .execute();
    }
    const query = (bidx: string) =>
      db()
        .selectFrom('users')
        .select(['id', 'email', 'name'])
        .where('tenant_id', '=', tenantId)
        .where('email_bidx', '=', bidx)
        .execute();
    let shared = 0;
    for (const { id, email } of made) {
      const seen: number[] = [];
      const found = await users.findByEmail(tenantId, email.toUpperCase(), async (bidx) => {
        const rows = await query(bidx);
        seen.push(rows.length);
        return rows;
      });
      expect(found?.id).toBe(id);
      if ((seen[0] ?? 0) > 1) shared += 1;
    }
    expect(shared).toBeGreaterThan(0);
    expect(await users.findByEmail(tenantId, 'nobody@collide.example', query)).toBeUndefined();
    expect(await users.findByEmail(null, made[0]!.email, query)).toBeUndefined();
  });

  it('opens a sealed pair for an unknown address as for a known one (the same work at sign-in)', async () => {
    const s = await ctx.tenant();
    const opened: string[] = [];
    const keys = ctx.services.keys;
    const counting = {
      ...keys,
      keyFor: (tenantId: string, ref: Parameters<typeof keys.keyFor>[1]) => {
        opened.push(ref.keyId);
        return keys.keyFor(tenantId, ref);
      },
    };
    const users = createUserCrypto({ keys: counting });
    const query = (bidx: string) =>
      db()
        .selectFrom('users')
        .select(['id', 'email', 'name'])
        .where('tenant_id', '=', s.tenantId)
        .where('email_bidx', '=', bidx)
        .execute();
    const work = async (tenantId: string | null, email: string) => {
      opened.length = 0;
      const found = await users.findByEmail(tenantId, email, query);
      return { found: found?.id, opened: [...opened] };
    };
    const tenantKey = `tenant:${s.tenantId}`;
    expect(await work(s.tenantId, s.email)).toEqual({ found: s.userId, opened: [tenantKey] });
    expect(await work(s.tenantId, 'nobody@nowhere.example')).toEqual({
      found: undefined,
      opened: [tenantKey],
    });
    expect(await work(s.tenantId, 'not an address')).toEqual({
      found: undefined,
      opened: [tenantKey],
    });
    // No tenant, no tenant key: a local decoy is opened instead.
    expect(await work(null, s.email)).toEqual({ found: undefined, opened: [] });
  });

  it('seals the address an e-mail change waits to confirm', async () => {
    const m = marker();
    const res = await ctx.app.inject({
      method: 'POST',
      url: '/api/v1/auth/email',
      headers: owner.headers,
      payload: { email: `${m}@new.example` },
    });
    expect(res.statusCode).toBe(202);
    const link = await db()
      .selectFrom('auth_links')
      .select(['new_email'])
      .where('user_id', '=', owner.userId)
      .where('purpose', '=', 'email_change')
      .orderBy('created_at', 'desc')
      .executeTakeFirstOrThrow();
    expect(link.new_email?.startsWith('cv2.')).toBe(true);
    expect(link.new_email).not.toContain(m);
  });
});

describe('users stored in clear by an earlier version (before migration 0019)', () => {
  it('migrates them, seals them at start once, and leaves no clear e-mail or name in storage', async () => {
    const database = await createTestDatabase({ migrate: false });
    const clock = createManualClock(new Date());
    const config = loadConfig({
      CUSTOS_DATA_DIR: database.dataDir,
      CUSTOS_LOG_LEVEL: 'silent',
      ...(database.url === undefined ? {} : { CUSTOS_DATABASE_URL: database.url }),
    });
    let keys: Awaited<ReturnType<typeof openKeys>> | undefined;
    try {
      const dbx = database.handle.db;
      const migrator = new Migrator({
        db: dbx,
        provider: { getMigrations: () => Promise.resolve(migrations) },
      });
      const before = await migrator.migrateTo('0017-key-reencryption');
      expect(before.error).toBeUndefined();
      const m = marker();
      const tenantId = newId();
      const userId = newId();
      const now = clock.now().toISOString();
      // Rows as the schema of 0017 had them (a clear lookup copy, no keyed columns).
      const old = dbx as unknown as Kysely<Record<string, Record<string, unknown>>>;
      await old
        .insertInto('tenants')
        .values({ id: tenantId, slug: 'old-tenant', name: 'Old', created_at: now })
        .execute();
      const users = [
        { id: userId, email: `${m}@Old.example`, name: `${m} Owner`, role: 'owner' },
        { id: newId(), email: `${m}.two@old.example`, name: `${m} Two`, role: 'agent' },
      ];
      for (const u of users) {
        await old
          .insertInto('users')
          .values({
            ...u,
            tenant_id: tenantId,
            email_normalized: u.email.toLowerCase(),
            status: 'active',
            password_hash: await hashPassword(PASSWORD),
            created_at: now,
            updated_at: now,
            version: 1,
          })
          .execute();
      }
      await old
        .insertInto('sessions')
        .values({
          id: newId(),
          tenant_id: tenantId,
          user_id: userId,
          token_hash: randomBytes(32).toString('hex'),
          created_at: now,
          last_seen_at: now,
          expires_at: now,
          ip: null,
          user_agent: null,
          revoked_at: null,
          authenticated_at: now,
        })
        .execute();

      await migrateToLatest(dbx);
      // The migration has no keys: values stay as they were, without an index.
      const migrated = await dbx
        .selectFrom('users')
        .select(['id', 'email', 'name', 'email_bidx', 'email_eq'])
        .orderBy('email')
        .execute();
      expect(migrated.map((r) => [r.email, r.email_bidx, r.email_eq])).toEqual([
        [`${m}.two@old.example`, null, null],
        [`${m}@Old.example`, null, null],
      ]);
      // Rows that point at users survived the rebuild.
      expect(await dbx.selectFrom('sessions').select('user_id').execute()).toEqual([
        { user_id: userId },
      ]);

      keys = await openKeys(config, { clock });
      await assertKeysUsable(keys);
      const first = await encryptClearUsers({ database: database.handle, keys: keys.service });
      expect(first).toEqual({ tenants: 1, encrypted: 4, failed: 0 });
      const sealed = await dbx
        .selectFrom('users')
        .select(['email', 'name', 'email_bidx', 'email_eq', 'version'])
        .execute();
      for (const row of sealed) {
        expect(row.email.startsWith('cv2.')).toBe(true);
        expect(row.name.startsWith('cv2.')).toBe(true);
        expect(row.email_bidx).not.toBeNull();
        expect(row.email_eq).not.toBeNull();
        // The same content: the version a client's ETag holds does not move.
        expect(Number(row.version)).toBe(1);
      }
      // Once is enough: a second start finds nothing to do.
      expect(await encryptClearUsers({ database: database.handle, keys: keys.service })).toEqual({
        tenants: 0,
        encrypted: 0,
        failed: 0,
      });
      const text = await rawStorage(database);
      expect(text).toContain('old-tenant');
      expect(text.includes(m), 'a clear e-mail or name is left in storage').toBe(false);

      // The server built on it signs them in by the blind index.
      const services = createServices({
        config,
        database: database.handle,
        clock,
        keys: keys.service,
      });
      const app = await buildApp({ config, services });
      try {
        const res = await app.inject({
          method: 'POST',
          url: '/api/v1/auth/login',
          payload: { tenant: 'old-tenant', email: `${m}@old.EXAMPLE`, password: PASSWORD },
        });
        expect(res.statusCode).toBe(200);
        expect(res.json()).toMatchObject({
          user: { id: userId, email: `${m}@Old.example`, name: `${m} Owner` },
        });
      } finally {
        await app.close();
        await services.throttleStore.close();
        services.mailer.close();
      }
    } finally {
      await keys?.service.close();
      await database.drop();
    }
  }, 60_000);
});
