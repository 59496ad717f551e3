import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import SQLite from 'better-sqlite3';
import { sql, type Kysely } from 'kysely';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openDatabase, SQLITE_FILE, type DatabaseHandle } from './database.ts';
import { FALLBACK_CHECKPOINT_PAGES } from './wal-checkpointer.ts';

type Db = Kysely<Record<string, { id: number; v: string }>>;

/** Rows of 3 KiB, one transaction each: about one log frame per row. */
async function write(handle: DatabaseHandle, from: number, rows: number) {
  const db = handle.db as unknown as Db;
  for (let i = from; i < from + rows; i++) {
    await db
      .insertInto('filler')
      .values({ id: i, v: 'x'.repeat(3072) })
      .execute();
  }
}

const until = async (check: () => boolean, ms = 10_000) => {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
};

describe('WAL checkpoints on their own thread (SQLite)', () => {
  let dir: string;
  let handle: DatabaseHandle | undefined;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'custos-ckpt-'));
  });
  afterEach(async () => {
    await handle?.close();
    handle = undefined;
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('copies the log into the database once it has grown by 1000 pages', async () => {
    handle = openDatabase({ dataDir: dir, walCheckpoints: 'thread' });
    await sql`create table filler (id integer primary key, v text)`.execute(handle.db);
    const { rows } = await sql<{
      wal_autocheckpoint: number;
    }>`pragma wal_autocheckpoint`.execute(handle.db);
    // The application's connection keeps only a distant safety net.
    expect(rows[0]?.wal_autocheckpoint).toBe(FALLBACK_CHECKPOINT_PAGES);
    const checkpointer = handle.walCheckpointer!;
    await write(handle, 0, 200);
    // Far below the threshold: nothing yet.
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(checkpointer.stats().checkpoints).toBe(0);
    await write(handle, 200, 1100);
    await until(() => checkpointer.stats().checkpointed > 0);
    const stats = checkpointer.stats();
    expect(stats.checkpoints).toBeGreaterThanOrEqual(1);
    expect(stats.log).toBeGreaterThanOrEqual(1000);
    expect(stats.error).toBeUndefined();
    // The database file itself now holds rows (not only the log). A passive checkpoint that runs
    // while the writes go on copies what it can (every row writes its leaf and the tree's inner
    // pages), so ask for a good part of the rows, not all 1000 pages' worth.
    expect(fs.statSync(path.join(dir, SQLITE_FILE)).size).toBeGreaterThan(200 * 3072);
  });

  it('keeps every committed row, written before and after checkpoints, after close', async () => {
    handle = openDatabase({ dataDir: dir, walCheckpoints: 'thread' });
    await sql`create table filler (id integer primary key, v text)`.execute(handle.db);
    await write(handle, 0, 300);
    const after = await handle.walCheckpointer!.checkpointNow();
    expect(after.checkpointed).toBe(after.log);
    await write(handle, 300, 300);
    await handle.close();
    handle = undefined;
    const check = new SQLite(path.join(dir, SQLITE_FILE), { readonly: true });
    try {
      expect(check.prepare('select count(*) as n from filler').get()).toEqual({ n: 600 });
      expect(check.pragma('integrity_check', { simple: true })).toBe('ok');
    } finally {
      check.close();
    }
  });

  it('is not started unless asked for', async () => {
    handle = openDatabase({ dataDir: dir });
    expect(handle.walCheckpointer).toBeUndefined();
    const { rows } = await sql<{
      wal_autocheckpoint: number;
    }>`pragma wal_autocheckpoint`.execute(handle.db);
    expect(rows[0]?.wal_autocheckpoint).toBe(1000);
  });
});
