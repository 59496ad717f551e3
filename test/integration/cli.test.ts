import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { runCli } from '../../src/cli/main.ts';
import { systemClock } from '../../src/clock.ts';
import { loadConfig } from '../../src/config.ts';
import { createServices } from '../../src/compose.ts';
import { buildApp } from '../../src/http/app.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';

const ROOT = path.resolve(import.meta.dirname, '..', '..');
const STRONG = 'a long and unguessable setup passphrase';

let database: TestDatabase;
const savedEnv = { ...process.env };

beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(async () => database?.drop());
afterEach(() => {
  for (const name of Object.keys(process.env)) {
    if (name.startsWith('CUSTOS_') && !(name in savedEnv)) delete process.env[name];
  }
  Object.assign(process.env, savedEnv);
  vi.restoreAllMocks();
});

/** The environment the CLI sees: the test database (SQLite dir or PostgreSQL URL). */
function useTestDatabase(extra: Record<string, string> = {}) {
  process.env.CUSTOS_DATA_DIR = database.dataDir;
  if (database.url) process.env.CUSTOS_DATABASE_URL = database.url;
  else delete process.env.CUSTOS_DATABASE_URL;
  Object.assign(process.env, extra);
}

/** Runs the CLI in-process, capturing what it prints. */
async function cli(args: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const spy = vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
    err.push(String(chunk));
    return true;
  });
  const status = await runCli(args, (line) => out.push(line));
  spy.mockRestore();
  return { status, out: out.join('\n'), err: err.join('') };
}

/**
 * Signs in through a real app on the test database, with the key store the CLI used (users'
 * e-mail addresses are found by a blind index under the tenant's key).
 */
async function signIn(tenant: string, email: string, password: string) {
  const config = loadConfig({
    CUSTOS_DATA_DIR: database.dataDir,
    CUSTOS_LOG_LEVEL: 'silent',
    ...(database.url ? { CUSTOS_DATABASE_URL: database.url } : {}),
  });
  const services = createServices({ config, database: database.handle, clock: systemClock });
  const app = await buildApp({
    config,
    services,
    logStream: new Writable({ write: (_c, _e, cb) => cb() }),
  });
  try {
    return await app.inject({
      method: 'POST',
      url: '/api/v1/auth/login',
      payload: { tenant, email, password },
    });
  } finally {
    await app.close();
    await services.keys.close();
  }
}

/** An environment for child processes: no CUSTOS_* variable of ours leaks in. */
function childEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(savedEnv)) if (!k.startsWith('CUSTOS_')) env[k] = v;
  return { ...env, ...extra };
}

function run(
  args: string[],
  env: Record<string, string>,
  input?: string,
): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { cwd: ROOT, env: childEnv(env) });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (status) => resolve({ status, stdout, stderr }));
    child.stdin.end(input ?? '');
  });
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

describe('custos setup', () => {
  it('creates a tenant and its owner, who can then sign in', async () => {
    useTestDatabase({ CUSTOS_SETUP_PASSWORD: STRONG });
    const res = await cli([
      'setup',
      '--tenant',
      'acme',
      '--name',
      'Acme Health',
      '--email',
      'Boss@Acme.example',
      '--owner-name',
      'The Boss',
    ]);
    expect(res.err).toBe('');
    expect(res.status).toBe(0);
    expect(res.out).toContain('Created tenant "acme"');
    expect(res.out).not.toContain(STRONG);

    const login = await signIn('acme', 'boss@acme.example', STRONG);
    expect(login.statusCode).toBe(200);
    expect(login.json().user).toMatchObject({
      email: 'Boss@Acme.example',
      name: 'The Boss',
      role: 'owner',
    });
    const tenant = await database.handle.db
      .selectFrom('tenants')
      .select(['slug', 'name'])
      .where('slug', '=', 'acme')
      .executeTakeFirstOrThrow();
    expect(tenant.name).toBe('Acme Health');
  });

  it('refuses a tenant slug that exists: non-zero exit and tenant.slug_taken', async () => {
    useTestDatabase({ CUSTOS_SETUP_PASSWORD: STRONG });
    const args = ['setup', '--tenant', 'dupe', '--name', 'One', '--email', 'one@dupe.example'];
    expect((await cli(args)).status).toBe(0);
    const again = await cli([
      'setup',
      '--tenant',
      'dupe',
      '--name',
      'Two',
      '--email',
      'two@dupe.example',
    ]);
    expect(again.status).not.toBe(0);
    expect(again.err).toContain('tenant.slug_taken');
    expect((await signIn('dupe', 'two@dupe.example', STRONG)).statusCode).toBe(401);
    expect((await signIn('dupe', 'one@dupe.example', STRONG)).statusCode).toBe(200);
  });

  it('refuses a weak password without echoing it, and creates nothing', async () => {
    useTestDatabase({ CUSTOS_SETUP_PASSWORD: 'Sh0rt!pass' });
    const res = await cli([
      'setup',
      '--tenant',
      'weak',
      '--name',
      'W',
      '--email',
      'w@weak.example',
    ]);
    expect(res.status).not.toBe(0);
    expect(res.err).toContain('auth.password_rejected');
    expect(res.err).toMatch(/password: must be at least 15 characters/);
    expect(res.err).not.toContain('Sh0rt!pass');
    const row = await database.handle.db
      .selectFrom('tenants')
      .select('id')
      .where('slug', '=', 'weak')
      .executeTakeFirst();
    expect(row).toBeUndefined();
  });

  it('gives the tenant the phone region of --phone-region, or of CUSTOS_DEFAULT_PHONE_REGION', async () => {
    const regionOf = async (slug: string) =>
      (
        await database.handle.db
          .selectFrom('tenant_settings')
          .innerJoin('tenants', 'tenants.id', 'tenant_settings.tenant_id')
          .select('tenant_settings.phone_region')
          .where('tenants.slug', '=', slug)
          .executeTakeFirst()
      )?.phone_region ?? null;
    const setup = (slug: string, ...more: string[]) =>
      cli(['setup', '--tenant', slug, '--name', 'R', '--email', `o@${slug}.example`, ...more]);
    useTestDatabase({ CUSTOS_SETUP_PASSWORD: STRONG, CUSTOS_DEFAULT_PHONE_REGION: 'DE' });
    expect((await setup('region-flag', '--phone-region', 'US')).status).toBe(0);
    expect(await regionOf('region-flag')).toBe('US');
    expect((await setup('region-default')).status).toBe(0);
    expect(await regionOf('region-default')).toBe('DE');
    const bad = await setup('region-bad', '--phone-region', 'ZZ');
    expect(bad.status).not.toBe(0);
    expect(bad.err).toMatch(/phone-region: /);
    expect(await regionOf('region-bad')).toBeNull();
    delete process.env.CUSTOS_DEFAULT_PHONE_REGION;
    expect((await setup('region-none')).status).toBe(0);
    expect(await regionOf('region-none')).toBeNull();
  });

  it('refuses a malformed slug or e-mail, naming each', async () => {
    useTestDatabase({ CUSTOS_SETUP_PASSWORD: STRONG });
    const res = await cli(['setup', '--tenant', 'Not A Slug', '--name', 'X', '--email', 'nope']);
    expect(res.status).not.toBe(0);
    expect(res.err).toMatch(/tenant: /);
    expect(res.err).toMatch(/email: /);
  });

  it('refuses to run without the required options', async () => {
    useTestDatabase({ CUSTOS_SETUP_PASSWORD: STRONG });
    const res = await cli(['setup', '--tenant', 'incomplete']);
    expect(res.status).not.toBe(0);
    expect(res.err).toMatch(/--name|--email/);
  });

  it('stops on a configuration error, naming the variable', async () => {
    useTestDatabase({ CUSTOS_SETUP_PASSWORD: STRONG, CUSTOS_DATABASE_URL: 'mysql://u:pw@h/db' });
    const res = await cli(['setup', '--tenant', 'cfg', '--name', 'C', '--email', 'c@cfg.example']);
    expect(res.status).not.toBe(0);
    expect(res.err).toContain('CUSTOS_DATABASE_URL');
    expect(res.err).not.toContain('pw@h');
  });
});

describe('custos migrate', () => {
  it('applies the migrations once, then reports the database up to date', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'custos-cli-'));
    try {
      delete process.env.CUSTOS_DATABASE_URL;
      process.env.CUSTOS_DATA_DIR = dir;
      const first = await cli(['migrate']);
      expect(first.status).toBe(0);
      expect(first.out).toMatch(/^Applied: 0001-initial/);
      const second = await cli(['migrate']);
      expect(second.status).toBe(0);
      expect(second.out).toBe('Database is up to date.');
      expect(fs.existsSync(path.join(dir, 'custos.db'))).toBe(true);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('is a no-op on the test database, which is already migrated', async () => {
    useTestDatabase();
    const res = await cli(['migrate']);
    expect(res.status).toBe(0);
    expect(res.out).toBe('Database is up to date.');
  });
});

describe('the custos binary', () => {
  it('lists setup and migrate in --help', async () => {
    const res = await run(['bin/custos.js', '--help'], {});
    expect(res.status).toBe(0);
    expect(res.stdout).toMatch(/^\s+setup\b/m);
    expect(res.stdout).toMatch(/^\s+migrate\b/m);
  });

  it("runs the command with a 32 MiB young generation, keeping the operator's NODE_OPTIONS after it", async () => {
    // A preload the operator asks for reports the options the command's own process got.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'custos-cli-options-'));
    const probe = path.join(dir, 'probe.cjs');
    fs.writeFileSync(
      probe,
      "if (process.argv.some((a) => a.endsWith('main.ts'))) process.stderr.write(`options: ${process.env.NODE_OPTIONS}\\n`);\n",
    );
    try {
      const res = await run(['bin/custos.js', '--help'], { NODE_OPTIONS: `--require ${probe}` });
      expect(res.status).toBe(0);
      expect(res.stderr).toContain(`options: --max-semi-space-size=32 --require ${probe}\n`);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('exits non-zero on an unknown command', async () => {
    const res = await run(['bin/custos.js', 'frobnicate'], {});
    expect(res.status).not.toBe(0);
    expect(res.stderr).toMatch(/unknown command/i);
  });

  it('reads the setup password from standard input when the variable is absent', async () => {
    const env: Record<string, string> = { CUSTOS_DATA_DIR: database.dataDir };
    if (database.url) env.CUSTOS_DATABASE_URL = database.url;
    const res = await run(
      ['bin/custos.js', 'setup', '--tenant', 'piped', '--name', 'P', '--email', 'p@piped.example'],
      env,
      `${STRONG}\n`,
    );
    expect(res.stderr).toBe('');
    expect(res.status).toBe(0);
    expect((await signIn('piped', 'p@piped.example', STRONG)).statusCode).toBe(200);
  });
});

describe('server start', () => {
  it('exits with status 2 naming CUSTOS_PORT when it is wrong', async () => {
    const res = await run(['--import', 'tsx', 'src/server.ts'], { CUSTOS_PORT: 'abc' });
    expect(res.status).toBe(2);
    expect(res.stderr).toContain('CUSTOS_PORT');
    expect(res.stderr).toContain('integer from 0 to 65535');
    expect(res.stdout).toBe('');
  });

  it('serves /healthz and /readyz and tells how to run custos setup when no tenant exists', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'custos-server-'));
    const port = await freePort();
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
      cwd: ROOT,
      env: childEnv({ CUSTOS_PORT: String(port), CUSTOS_DATA_DIR: dir }),
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
    try {
      const base = `http://127.0.0.1:${port}`;
      // Loading the TypeScript sources with tsx takes ~6 s on an idle 2-core machine, several times
      // that while the rest of the suite runs beside it: this waits for the answer, it times nothing.
      const deadline = Date.now() + 45_000;
      let health: Response | undefined;
      while (Date.now() < deadline && child.exitCode === null) {
        health = await fetch(`${base}/healthz`).catch(() => undefined);
        if (health) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(health?.status, stderr).toBe(200);
      expect(await health!.json()).toEqual({ status: 'ok' });
      const ready = await fetch(`${base}/readyz`);
      expect(ready.status).toBe(200);
      expect(await ready.json()).toEqual({ status: 'ready' });
      const lines = stdout
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as { level: number; msg: string });
      const hint = lines.find((l) => l.msg.includes('custos setup'));
      expect(hint).toBeDefined();
      expect(hint!.level).toBe(40);
      expect(hint!.msg).toContain('CUSTOS_SETUP_PASSWORD');
      expect(fs.existsSync(path.join(dir, 'custos.db'))).toBe(true);
    } finally {
      child.kill('SIGTERM');
      const code = await exited;
      fs.rmSync(dir, { recursive: true, force: true });
      expect(code).toBe(0);
    }
  }, 60_000);
});
