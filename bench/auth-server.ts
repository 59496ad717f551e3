/**
 * The server of the sign-in benchmark, in its own process so the load generator does not share
 * its event loop: the real app (SQLite, trusting X-Forwarded-For so that every attempt can come
 * from its own address), one tenant with `BENCH_USERS` users sharing one argon2id hash (made once:
 * the seeding would otherwise take minutes). Prints one JSON line with the port, then serves.
 * Over IPC: `{ cmd: 'loop-start' }` resets the event-loop delay histogram, `{ cmd: 'loop-stop' }`
 * answers `{ maxMs, p99Ms, meanMs }` measured since.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { systemClock } from '../src/clock.ts';
import { loadConfig } from '../src/config.ts';
import { createServices } from '../src/compose.ts';
import { migrateToLatest, openDatabase } from '../src/db/database.ts';
import { buildApp } from '../src/http/app.ts';
import { newId } from '../src/ids.ts';
import { hashPassword } from '../src/modules/identity/passwords.ts';
import { setupTenant } from '../src/modules/tenants/service.ts';

export const BENCH_PASSWORD = 'bench password that is long enough';
const USERS = Number(process.env.BENCH_USERS ?? 4000);

const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'custos-bench-auth-'));
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.on(signal, () => {
    fs.rmSync(dataDir, { recursive: true, force: true });
    process.exit(0);
  });
}

const config = loadConfig({
  CUSTOS_DATA_DIR: dataDir,
  CUSTOS_LOG_LEVEL: 'silent',
  CUSTOS_PORT: '0',
  CUSTOS_TRUST_PROXY: 'true',
  CUSTOS_LOGIN_FAILURES_PER_ADDRESS_PER_DAY: '1000000',
});
// As in src/server.ts: checkpoints off the event loop.
const database = openDatabase({ dataDir, walCheckpoints: 'thread' });
await migrateToLatest(database.db);
const services = createServices({ config, database, clock: systemClock });
await setupTenant(
  { db: database.db, clock: systemClock, users: services.userCrypto },
  {
    slug: 'bench',
    name: 'Bench',
    ownerEmail: 'owner@bench.example',
    ownerName: 'Owner',
    password: BENCH_PASSWORD,
  },
);
const tenant = await database.db
  .selectFrom('tenants')
  .select('id')
  .where('slug', '=', 'bench')
  .executeTakeFirstOrThrow();
const hash = await hashPassword(BENCH_PASSWORD);
const now = new Date().toISOString();
for (let start = 0; start < USERS; start += 500) {
  const rows = [];
  for (let i = start; i < Math.min(USERS, start + 500); i++) {
    const id = newId();
    rows.push({
      id,
      tenant_id: tenant.id,
      ...(await services.userCrypto.seal(tenant.id, id, {
        email: `user${i}@bench.example`,
        name: `User ${i}`,
      })),
      role: 'agent' as const,
      status: 'active' as const,
      password_hash: hash,
      created_at: now,
      updated_at: now,
      version: 1,
    });
  }
  await database.db.insertInto('users').values(rows).execute();
}

const app = await buildApp({ config, services });
await app.listen({ host: '127.0.0.1', port: 0 });

const loop = monitorEventLoopDelay({ resolution: 1 });
loop.enable();
// BENCH_LONG_TASKS=<ms>: every stall of the event loop longer than that, with its monotonic time
// (µs, the clock of --cpu-prof and --trace-gc's process uptime), on standard error.
const longTaskMs = Number(process.env.BENCH_LONG_TASKS ?? 0);
const micros = () => Number(process.hrtime.bigint() / 1000n);
// Linux: /proc/thread-self/schedstat splits each stall into time on a CPU (work on the main
// thread), time runnable but waiting for a CPU (other threads or processes had it) and the rest
// (blocked in a system call, e.g. fsync).
const schedstat = (): [number, number] => {
  try {
    const [run = 0, wait = 0] = fs
      .readFileSync('/proc/thread-self/schedstat', 'utf8')
      .split(' ')
      .map(Number);
    return [run / 1e6, wait / 1e6];
  } catch {
    return [NaN, NaN];
  }
};
if (longTaskMs > 0) {
  let last = performance.now();
  let [lastRun, lastWait] = schedstat();
  setInterval(() => {
    const now = performance.now();
    const [run, wait] = schedstat();
    const gap = now - last;
    if (gap > longTaskMs + 1) {
      process.stderr.write(
        `long task: ${gap.toFixed(1)} ms ending at ${micros()} us: on CPU ${(run - lastRun).toFixed(1)} ms, ` +
          `waiting for a CPU ${(wait - lastWait).toFixed(1)} ms, blocked ${(gap - (run - lastRun) - (wait - lastWait)).toFixed(1)} ms\n`,
      );
    }
    last = now;
    lastRun = run;
    lastWait = wait;
  }, 1).unref();
}
process.on('message', (message: { cmd: string }) => {
  if (longTaskMs > 0) process.stderr.write(`${message.cmd} at ${micros()} us\n`);
  if (message.cmd === 'loop-start') loop.reset();
  if (message.cmd === 'loop-stop') {
    process.send?.({
      maxMs: loop.max / 1e6,
      p99Ms: loop.percentile(99) / 1e6,
      meanMs: loop.mean / 1e6,
    });
  }
});
const address = app.addresses()[0] as { port: number } | undefined;
process.stdout.write(`${JSON.stringify({ port: address?.port, users: USERS })}\n`);
