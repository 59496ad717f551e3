import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Migrator, sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase, type DatabaseHandle } from '../../src/db/database.ts';
import { migrations } from '../../src/db/migrations/index.ts';
import { dialectUnderTest } from '../helpers/database.ts';

// Migration 0018 rebuilds audit_nodes on SQLite only (PostgreSQL is unchanged).
describe.skipIf(dialectUnderTest !== 'sqlite')('migration 0018 (audit_nodes clustered)', () => {
  let dir: string;
  let database: DatabaseHandle;
  let migrator: Migrator;
  const nodes = [
    { tenant_id: 't1', level: 0, idx: 0, hash: 'a'.repeat(64) },
    { tenant_id: 't1', level: 1, idx: 0, hash: 'b'.repeat(64) },
    { tenant_id: 't2', level: 0, idx: 5, hash: 'c'.repeat(64) },
  ];
  const tableSql = async () =>
    (
      await sql<{
        sql: string;
      }>`select sql from sqlite_master where type = 'table' and name = 'audit_nodes'`.execute(
        database.db,
      )
    ).rows[0]?.sql ?? '';
  const stored = () =>
    database.db
      .selectFrom('audit_nodes')
      .select(['tenant_id', 'level', 'idx', 'hash'])
      .orderBy('tenant_id')
      .orderBy('level')
      .orderBy('idx')
      .execute();

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'custos-0018-'));
    database = openDatabase({ dataDir: dir });
    migrator = new Migrator({
      db: database.db,
      provider: { getMigrations: () => Promise.resolve(migrations) },
    });
    expect((await migrator.migrateTo('0017-key-reencryption')).error).toBeUndefined();
    for (const id of ['t1', 't2']) {
      await database.db
        .insertInto('tenants')
        .values({ id, slug: id, name: id, created_at: '2026-01-01T00:00:00.000Z' })
        .execute();
    }
    await database.db.insertInto('audit_nodes').values(nodes).execute();
  });
  afterAll(async () => {
    await database?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('keeps every row, the key and the tenant reference, without a rowid', async () => {
    expect(await tableSql()).not.toMatch(/without rowid/i);
    expect((await migrator.migrateToLatest()).error).toBeUndefined();
    expect(await tableSql()).toMatch(/without rowid\s*$/i);
    expect(await stored()).toEqual(nodes);
    const duplicate = database.db.insertInto('audit_nodes').values(nodes[1]!).execute();
    await expect(duplicate).rejects.toThrow(/UNIQUE|PRIMARY KEY/);
    const orphan = database.db
      .insertInto('audit_nodes')
      .values({ ...nodes[0]!, tenant_id: 'no-such-tenant' })
      .execute();
    await expect(orphan).rejects.toThrow(/FOREIGN KEY/);
  });

  it('goes back to a rowid table with the same rows', async () => {
    // The later migrations stay applied: 0018's own down and up, run directly.
    const m0018 = migrations['0018-audit-nodes-clustered']!;
    await m0018.down!(database.db);
    expect(await tableSql()).not.toMatch(/without rowid/i);
    expect(await stored()).toEqual(nodes);
    await m0018.up(database.db);
    expect(await tableSql()).toMatch(/without rowid\s*$/i);
    expect(await stored()).toEqual(nodes);
  });
});
