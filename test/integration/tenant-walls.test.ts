import cookie from '@fastify/cookie';
import Fastify, { type FastifyInstance } from 'fastify';
import { sql, type Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DatabaseHandle } from '../../src/db/database.ts';
import type { Database } from '../../src/db/schema.ts';
import { runAsSystem, runInTenant } from '../../src/db/tenant-scope.ts';
import { APP_ROLE, TENANT_WALL_POLICY } from '../../src/db/tenant-walls.ts';
import { createTestContext, type Session, type TestContext } from '../helpers/context.ts';
import { dialectUnderTest, openAppHandle } from '../helpers/database.ts';
import { registerAuthentication } from '../../src/http/auth.ts';

/**
 * The second wall between tenants: PostgreSQL's row-level security refuses other tenants' rows
 * to the application's own connections even when a query forgets its `tenant_id` filter.
 * SQLite has no row-level security: there the first wall (every query filters by tenant) is the
 * only one, and these tests are skipped.
 */
describe.skipIf(dialectUnderTest !== 'postgres')(
  'tenant walls (PostgreSQL row-level security)',
  () => {
    let ctx: TestContext;
    let a: Session;
    let b: Session;
    /** The application's connection path: openDatabase with its walls, as server.ts opens it. */
    let app: { handle: DatabaseHandle; close(): Promise<void> };
    let db: Kysely<Database>;
    /** The test's own view, past the walls (a superuser), to check what really happened. */
    let owner: Kysely<Database>;

    const createContact = async (s: Session, lastName: string) => {
      const res = await ctx.app.inject({
        method: 'POST',
        url: '/api/v1/contacts',
        headers: s.headers,
        payload: { firstName: 'Walled', lastName, email: `${lastName}@example.com` },
      });
      expect(res.statusCode).toBe(201);
      return res.json<{ id: string }>().id;
    };

    // A query that "forgot" its tenant filter.
    const everyContact = (on: Kysely<Database>) =>
      sql<{ id: string; tenant_id: string }>`select id, tenant_id from contacts`.execute(on);

    beforeAll(async () => {
      ctx = await createTestContext();
      a = await ctx.tenant();
      b = await ctx.tenant();
      await createContact(a, 'a-one');
      await createContact(a, 'a-two');
      await createContact(b, 'b-one');
      app = openAppHandle(ctx.database);
      db = app.handle.db;
      owner = ctx.database.handle.db;
    });
    afterAll(async () => {
      await app?.close();
      await ctx?.close();
    });

    it('returns only the scoped tenant its rows to a query without a tenant filter', async () => {
      const all = await everyContact(owner);
      expect(new Set(all.rows.map((r) => r.tenant_id))).toEqual(new Set([a.tenantId, b.tenantId]));

      const seenByA = await runInTenant(a.tenantId, () => everyContact(db));
      expect(seenByA.rows).toHaveLength(2);
      expect(seenByA.rows.every((r) => r.tenant_id === a.tenantId)).toBe(true);

      const seenByB = await runInTenant(b.tenantId, () =>
        db.selectFrom('users').select(['id', 'tenant_id']).execute(),
      );
      expect(seenByB.length).toBeGreaterThan(0);
      expect(seenByB.every((r) => r.tenant_id === b.tenantId)).toBe(true);

      // The audit log and the blind indexes are behind the same wall.
      const events = await runInTenant(a.tenantId, () =>
        db.selectFrom('audit_events').select('tenant_id').execute(),
      );
      expect(events.length).toBeGreaterThan(0);
      expect(events.every((e) => e.tenant_id === a.tenantId)).toBe(true);
      const byIndex = await runInTenant(a.tenantId, () =>
        db.selectFrom('contacts').select('tenant_id').where('email_bidx', 'is not', null).execute(),
      );
      expect(byIndex.every((r) => r.tenant_id === a.tenantId)).toBe(true);
    });

    it('keeps the wall inside a transaction, and asking for the other tenant by id finds nothing', async () => {
      const bContact = (await everyContact(owner)).rows.find((r) => r.tenant_id === b.tenantId);
      expect(bContact).toBeDefined();
      const found = await runInTenant(a.tenantId, () =>
        db.transaction().execute(async (trx) => ({
          all: await everyContact(trx),
          byId: await trx
            .selectFrom('contacts')
            .select('id')
            .where('id', '=', bContact?.id ?? '')
            .execute(),
        })),
      );
      expect(found.all.rows.map((r) => r.tenant_id)).toEqual([a.tenantId, a.tenantId]);
      expect(found.byId).toEqual([]);
    });

    it('returns nothing to a query made outside any tenant scope', async () => {
      expect((await everyContact(db)).rows).toEqual([]);
      expect(await db.selectFrom('users').select('id').execute()).toEqual([]);
      expect(await db.selectFrom('tenants').select('id').execute()).toEqual([]);
    });

    it('changes and deletes no other tenant its rows', async () => {
      const updated = await runInTenant(a.tenantId, () =>
        db.updateTable('contacts').set({ title: 'touched' }).executeTakeFirst(),
      );
      expect(Number(updated.numUpdatedRows)).toBe(2);
      const deleted = await runInTenant(a.tenantId, () =>
        db.deleteFrom('contacts').where('tenant_id', '=', b.tenantId).executeTakeFirst(),
      );
      expect(Number(deleted.numDeletedRows)).toBe(0);
      const bRows = await owner
        .selectFrom('contacts')
        .select('title')
        .where('tenant_id', '=', b.tenantId)
        .execute();
      expect(bRows).toEqual([{ title: null }]);
      // An UPDATE that would move a row to another tenant is refused too (WITH CHECK).
      await expect(
        runInTenant(a.tenantId, () =>
          db.updateTable('contacts').set({ tenant_id: b.tenantId }).execute(),
        ),
      ).rejects.toMatchObject({ code: '42501' });
    });

    it("refuses to insert a row carrying another tenant's id", async () => {
      const row = await owner
        .selectFrom('api_keys')
        .select('id')
        .where('tenant_id', '=', b.tenantId)
        .execute();
      expect(row).toEqual([]);
      await expect(
        runInTenant(a.tenantId, () =>
          db
            .insertInto('detection_settings')
            .values({ tenant_id: b.tenantId, settings: '{}', updated_at: new Date().toISOString() })
            .execute(),
        ),
      ).rejects.toMatchObject({ code: '42501' });
      const planted = await owner
        .selectFrom('detection_settings')
        .select('tenant_id')
        .where('tenant_id', '=', b.tenantId)
        .execute();
      expect(planted).toEqual([]);
    });

    it('runs the application as a role that neither owns the tables nor bypasses the policies', async () => {
      const who = await runInTenant(a.tenantId, () =>
        sql<{ role: string; bypass: boolean; superuser: boolean }>`
        select current_user as role, r.rolbypassrls as bypass, r.rolsuper as superuser
        from pg_roles r where r.rolname = current_user`.execute(db),
      );
      expect(who.rows).toEqual([{ role: APP_ROLE, bypass: false, superuser: false }]);
      const owned = await sql<{ n: string }>`
      select count(*) as n from pg_tables where tableowner = ${APP_ROLE}`.execute(owner);
      expect(Number(owned.rows[0]?.n)).toBe(0);
      // TRUNCATE ignores row-level security: the role may not.
      await expect(
        runInTenant(a.tenantId, () => sql`truncate contacts cascade`.execute(db)),
      ).rejects.toMatchObject({ code: '42501' });
    });

    it('lets the system scope, and only it, see across tenants', async () => {
      const all = await runAsSystem('worker', () => everyContact(db));
      expect(all.rows).toHaveLength(3);
    });

    describe('in an HTTP request', () => {
      let probe: FastifyInstance;
      beforeAll(async () => {
        // The app's own authentication hook in front of routes whose query forgets its filter.
        probe = Fastify();
        await probe.register(cookie);
        registerAuthentication(probe, ctx.services.auth);
        const forgetful = async () => (await everyContact(db)).rows.map((r) => r.tenant_id);
        probe.get('/api/v1/forgetful', forgetful);
        probe.get('/api/v1/forgetful-public', { config: { public: true } }, forgetful);
        await probe.ready();
      });
      afterAll(async () => probe?.close());

      it("serves a signed-in caller only its tenant's rows", async () => {
        for (const s of [a, b]) {
          const res = await probe.inject({ url: '/api/v1/forgetful', headers: s.headers });
          expect(res.statusCode).toBe(200);
          const tenants = res.json<string[]>();
          expect(tenants.length).toBeGreaterThan(0);
          expect(new Set(tenants)).toEqual(new Set([s.tenantId]));
        }
      });

      it('crosses the walls on a public route (the documented pre-auth exception)', async () => {
        const res = await probe.inject({ url: '/api/v1/forgetful-public' });
        expect(new Set(res.json<string[]>())).toEqual(new Set([a.tenantId, b.tenantId]));
      });
    });

    /** Tables with a `tenant_id` column lacking ENABLE + FORCE row-level security or the policy. */
    const unwalledTables = async () => {
      const { rows } = await sql<{
        table_name: string;
        rls: boolean | null;
        forced: boolean | null;
        policies: string;
      }>`
      select c.table_name, k.relrowsecurity as rls, k.relforcerowsecurity as forced,
             (select count(*) from pg_policies p
               where p.schemaname = c.table_schema and p.tablename = c.table_name
                 and p.policyname = ${TENANT_WALL_POLICY}) as policies
      from information_schema.columns c
      join information_schema.tables t
        on t.table_schema = c.table_schema and t.table_name = c.table_name
      join pg_class k on k.oid = format('%I.%I', c.table_schema, c.table_name)::regclass
      where c.column_name = 'tenant_id' and t.table_type = 'BASE TABLE'
        -- custos_keys: the key store, a separate store reached only by the key service with its
        -- own connection (see docs/security/tenant-walls.md).
        and c.table_schema not in ('pg_catalog', 'information_schema', 'custos_keys')
      order by c.table_name`.execute(owner);
      return {
        all: rows.map((r) => r.table_name),
        unwalled: rows
          .filter((r) => r.rls !== true || r.forced !== true || Number(r.policies) !== 1)
          .map((r) => r.table_name),
      };
    };

    it('has a wall on every table with a tenant_id column', async () => {
      const { all, unwalled } = await unwalledTables();
      expect(all).toEqual(
        expect.arrayContaining(['contacts', 'audit_events', 'sessions', 'alerts']),
      );
      expect(unwalled).toEqual([]);
    });

    it('notices a new tenant-owned table that has no wall', async () => {
      await sql`create table walls_probe (id text primary key, tenant_id text not null)`.execute(
        owner,
      );
      try {
        expect((await unwalledTables()).unwalled).toEqual(['walls_probe']);
      } finally {
        await sql`drop table walls_probe`.execute(owner);
      }
    });
  },
);
