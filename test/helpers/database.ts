import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { migrateToLatest, openDatabase, type DatabaseHandle } from '../../src/db/database.ts';

/**
 * The database the suite runs on: SQLite in a fresh temporary directory by default, or, when
 * CUSTOS_TEST_DATABASE_URL names a PostgreSQL server, a fresh database created on it for each
 * test file and dropped afterwards. `.ci/run` runs the whole suite both ways.
 */
export const testDatabaseUrl = process.env.CUSTOS_TEST_DATABASE_URL;
export const dialectUnderTest = testDatabaseUrl ? 'postgres' : 'sqlite';

export interface TestDatabase {
  /** Past the tenant walls on PostgreSQL: for setting up and inspecting, never for the app. */
  handle: DatabaseHandle;
  dataDir: string;
  /** The connection URL (PostgreSQL only), for processes started by a test. */
  url?: string;
  drop(): Promise<void>;
}

/** `migrate: false` leaves the database empty (a test of a migration applies them itself). */
export async function createTestDatabase(
  options: { migrate?: boolean } = {},
): Promise<TestDatabase> {
  const migrate = options.migrate ?? true;
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'custos-test-'));
  if (!testDatabaseUrl) {
    const handle = openDatabase({ dataDir });
    if (migrate) await migrateToLatest(handle.db);
    return {
      handle,
      dataDir,
      drop: async () => {
        await handle.close();
        fs.rmSync(dataDir, { recursive: true, force: true });
      },
    };
  }
  const admin = new URL(testDatabaseUrl);
  const base = admin.pathname.replace(/^\//, '') || 'postgres';
  const name = `${base}_${randomBytes(5).toString('hex')}`.toLowerCase();
  const client = new pg.Client({ connectionString: testDatabaseUrl });
  await client.connect();
  await client.query(`CREATE DATABASE "${name}"`);
  await client.end();
  const url = new URL(testDatabaseUrl);
  url.pathname = `/${name}`;
  // The test's own view: the login role (a superuser here), past the tenant walls, to set up and
  // inspect what the application wrote. The application gets `openAppHandle` (walled).
  const handle = openDatabase({
    databaseUrl: url.toString(),
    dataDir,
    poolSize: 5,
    tenantWalls: false,
  });
  if (migrate) await migrateToLatest(handle.db);
  return {
    handle,
    dataDir,
    url: url.toString(),
    drop: async () => {
      await handle.close();
      const c = new pg.Client({ connectionString: testDatabaseUrl });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      await c.end();
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/**
 * The handle the application under test uses: on PostgreSQL a second pool behind the tenant walls
 * (as server.ts opens it); on SQLite the same handle (no walls, and one writer keeps the session
 * cache exact). Close it before `drop()`.
 */
export function openAppHandle(database: TestDatabase): {
  handle: DatabaseHandle;
  close(): Promise<void>;
} {
  if (!database.url) return { handle: database.handle, close: () => Promise.resolve() };
  const handle = openDatabase({
    databaseUrl: database.url,
    dataDir: database.dataDir,
    poolSize: 5,
  });
  return { handle, close: () => handle.close() };
}
