import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { sql, type Kysely } from 'kysely';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openDatabase, type DatabaseHandle } from './database.ts';

describe('write watches on SQLite', () => {
  let dir: string;
  let handle: DatabaseHandle;
  beforeEach(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'custos-watch-'));
    handle = openDatabase({ dataDir: dir });
    await sql`create table watched (id integer primary key, v text)`.execute(handle.db);
    await sql`create table other (id integer primary key, v text)`.execute(handle.db);
  });
  afterEach(async () => {
    await handle.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('counts the selected writes, not reads or other tables', async () => {
    const watch = handle.watchWrites!((text) => text.includes('"watched"'));
    const db = handle.db as unknown as Kysely<Record<string, { id: number; v: string }>>;
    const start = watch.epoch;
    await db.selectFrom('watched').selectAll().execute();
    await db.insertInto('other').values({ id: 1, v: 'x' }).execute();
    expect(watch.epoch).toBe(start);
    await db.insertInto('watched').values({ id: 1, v: 'x' }).execute();
    expect(watch.epoch).toBeGreaterThan(start);
    const afterInsert = watch.epoch;
    await db.updateTable('watched').set({ v: 'y' }).where('id', '=', 1).returning('id').execute();
    expect(watch.epoch).toBeGreaterThan(afterInsert);
  });

  it('counts again when the transaction that wrote ends, committed or rolled back', async () => {
    const watch = handle.watchWrites!((text) => text.includes('"watched"'));
    const db = handle.db as unknown as Kysely<Record<string, { id: number; v: string }>>;
    let inside = -1;
    await db.transaction().execute(async (trx) => {
      await trx.insertInto('watched').values({ id: 2, v: 'x' }).execute();
      inside = watch.epoch;
    });
    expect(watch.epoch).toBeGreaterThan(inside);
    const beforeFailed = watch.epoch;
    await expect(
      db.transaction().execute(async (trx) => {
        await trx.insertInto('watched').values({ id: 3, v: 'x' }).execute();
        inside = watch.epoch;
        throw new Error('abort');
      }),
    ).rejects.toThrow('abort');
    expect(inside).toBeGreaterThan(beforeFailed);
    expect(watch.epoch).toBeGreaterThan(inside);
    // A transaction that wrote nothing watched leaves the epoch alone.
    const quiet = watch.epoch;
    await db.transaction().execute(async (trx) => {
      await trx.insertInto('other').values({ id: 9, v: 'x' }).execute();
    });
    expect(watch.epoch).toBe(quiet);
  });
});
