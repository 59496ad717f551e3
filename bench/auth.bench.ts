/**
 * `npm run bench:auth`: sign-in under a storm of parallel valid and invalid attempts, against the
 * real app in its own process (SQLite). Prints
 * - sign-ins per second (all answers, and the successful ones) and p99 latency;
 * - the server's event-loop maximum delay during the storm (goal < 20 ms: argon2 runs on the
 *   libuv thread pool, never on the main thread);
 * - the median answer time of an unknown user, an unknown tenant and a locked account against a
 *   wrong password, measured interleaved afterwards, with the noise (the same comparison between
 *   two halves of the wrong-password samples, and the interquartile ranges).
 * Every attempt comes from its own X-Forwarded-For address and the per-address budget is raised,
 * and valid and wrong-password attempts are spread over thousands of users, so throttling does
 * not turn the storm into a stream of lockouts. BENCH_DURATION (s, default 10), BENCH_CONNECTIONS
 * (default 32), BENCH_SAMPLES (timing samples per kind, default 150), BENCH_USERS (default 4000).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';

const here = path.dirname(fileURLToPath(import.meta.url));
const DURATION_S = Number(process.env.BENCH_DURATION ?? 10);
const WARMUP_S = 3;
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 32);
const SAMPLES = Number(process.env.BENCH_SAMPLES ?? 150);
const PASSWORD = 'bench password that is long enough';

interface Server {
  child: ChildProcess;
  port: number;
  users: number;
}

async function start(): Promise<Server> {
  // BENCH_SERVER_ARGS: extra node flags for the server only (diagnostics: --trace-gc, --cpu-prof).
  const extra = (process.env.BENCH_SERVER_ARGS ?? '').split(/\s+/).filter(Boolean);
  const child = spawn(
    process.execPath,
    [...extra, '--import', 'tsx', path.join(here, 'auth-server.ts')],
    { stdio: ['ignore', 'pipe', 'inherit', 'ipc'] },
  );
  // The first JSON line says where the server listens; anything else it prints (--trace-gc)
  // goes on to standard error, read to the end so that the pipe never fills.
  const rl = readline.createInterface({ input: child.stdout! });
  return new Promise((resolve, reject) => {
    let started = false;
    rl.on('line', (line) => {
      if (!started && line.startsWith('{')) {
        started = true;
        resolve({ child, ...(JSON.parse(line) as { port: number; users: number }) });
      } else process.stderr.write(`${line}\n`);
    });
    rl.on('close', () => {
      if (!started) reject(new Error('auth benchmark server did not start'));
    });
  });
}

function ask<T>(child: ChildProcess, cmd: string): Promise<T> {
  return new Promise((resolve) => {
    child.once('message', (m) => resolve(m as T));
    child.send({ cmd });
  });
}

let addressCounter = 0;
/** A fresh documentation-range-like address per attempt (10.0.0.0/8 has 16 M). */
const nextAddress = () => {
  const n = ++addressCounter;
  return `10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`;
};

type Kind = 'valid' | 'wrong_password' | 'unknown_user' | 'unknown_tenant' | 'locked';

function attempt(kind: Kind, users: number, i: number) {
  // Valid sign-ins use the first half of the users, wrong passwords the second half.
  const half = Math.floor(users / 2);
  switch (kind) {
    case 'valid':
      return { tenant: 'bench', email: `user${i % half}@bench.example`, password: PASSWORD };
    case 'wrong_password':
      return {
        tenant: 'bench',
        email: `user${half + (i % (half - 10))}@bench.example`,
        password: `${PASSWORD} but wrong`,
      };
    case 'unknown_user':
      return { tenant: 'bench', email: `nobody${i}@bench.example`, password: `${PASSWORD} x` };
    case 'unknown_tenant':
      return { tenant: `nowhere${i % 97}`, email: `user${i}@bench.example`, password: PASSWORD };
    case 'locked':
      // The last ten users, locked before the timing phase.
      return {
        tenant: 'bench',
        email: `user${users - 1 - (i % 10)}@bench.example`,
        password: `${PASSWORD} but wrong`,
      };
  }
}

async function storm(server: Server, durationS = DURATION_S) {
  const kinds: Kind[] = ['valid', 'wrong_password', 'valid', 'unknown_user', 'unknown_tenant'];
  let n = 0;
  server.child.send({ cmd: 'loop-start' });
  const result = await autocannon({
    url: `http://127.0.0.1:${server.port}`,
    connections: CONNECTIONS,
    duration: durationS,
    requests: [
      {
        method: 'POST',
        path: '/api/v1/auth/login',
        setupRequest: (req) => {
          const i = n++;
          const kind = kinds[i % kinds.length] ?? 'valid';
          return {
            ...req,
            headers: {
              'content-type': 'application/json',
              'x-forwarded-for': nextAddress(),
            },
            body: JSON.stringify(attempt(kind, server.users, Math.floor(i / kinds.length))),
          };
        },
      },
    ],
  });
  const loop = await ask<{ maxMs: number; p99Ms: number; meanMs: number }>(
    server.child,
    'loop-stop',
  );
  return { result, loop };
}

async function timed(server: Server, kind: Kind, i: number): Promise<number> {
  const started = process.hrtime.bigint();
  const res = await fetch(`http://127.0.0.1:${server.port}/api/v1/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-forwarded-for': nextAddress() },
    body: JSON.stringify(attempt(kind, server.users, i)),
  });
  await res.arrayBuffer();
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  if (res.status !== 401) throw new Error(`${kind}: expected 401, got ${res.status}`);
  return ms;
}

const quantile = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? NaN;
};
const median = (xs: number[]) => quantile(xs, 0.5);
const f = (x: number, d = 2) => x.toFixed(d).padStart(8);

async function timing(server: Server) {
  // Lock the ten "locked" users (5 failures each lock for a minute, longer with each failure).
  for (let i = 0; i < 60; i++) {
    await fetch(`http://127.0.0.1:${server.port}/api/v1/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-forwarded-for': nextAddress() },
      body: JSON.stringify(attempt('locked', server.users, i)),
    }).then((r) => r.arrayBuffer());
  }
  const kinds: Kind[] = ['wrong_password', 'unknown_user', 'unknown_tenant', 'locked'];
  const samples: Record<string, number[]> = Object.fromEntries(kinds.map((k) => [k, []]));
  // Warm-up, then interleaved rounds in rotating order, so drift hits every kind alike.
  for (let i = 0; i < 10; i++) for (const k of kinds) await timed(server, k, 100_000 + i);
  for (let i = 0; i < SAMPLES; i++) {
    for (let j = 0; j < kinds.length; j++) {
      const k = kinds[(i + j) % kinds.length] as Kind;
      samples[k]!.push(await timed(server, k, i));
    }
  }
  return samples as Record<Kind, number[]>;
}

const server = await start();
try {
  // A first short storm warms the server (JIT, lazily loaded modules, first statements); its
  // worst delay is printed apart, and the goal is judged on the steady storm that follows.
  const warm = await storm(server, WARMUP_S);
  const { result, loop } = await storm(server);
  const answers = result['2xx'] + result.non2xx;
  const lines = [
    '',
    `Sign-in storm (${DURATION_S}s, ${CONNECTIONS} connections; 2/5 valid, 1/5 wrong password, 1/5 unknown user, 1/5 unknown tenant; SQLite, ${server.users} users)`,
    `  answers/s            ${f(answers / DURATION_S, 1)}`,
    `  sign-ins/s (200)     ${f(result['2xx'] / DURATION_S, 1)}`,
    `  latency p50 / p99    ${f(result.latency.p50, 0)} ms ${f(result.latency.p99, 0)} ms`,
    `  errors / timeouts    ${f(result.errors, 0)} ${f(result.timeouts, 0)}`,
    `  machine              ${os.availableParallelism()} CPUs, load average ${os
      .loadavg()
      .map((l) => l.toFixed(1))
      .join(' / ')} (1/5/15 min; numbers above ~CPUs mean other work shares the cores)`,
    `  event loop delay     max ${loop.maxMs.toFixed(2)} ms, p99 ${loop.p99Ms.toFixed(2)} ms, mean ${loop.meanMs.toFixed(2)} ms (goal: max < 20 ms) ${loop.maxMs < 20 ? 'OK' : 'OVER'}`,
    `  warm-up (first ${WARMUP_S}s) max ${warm.loop.maxMs.toFixed(2)} ms, p99 ${warm.loop.p99Ms.toFixed(2)} ms (cold start, not judged)`,
  ];
  const samples = await timing(server);
  const wrong = samples.wrong_password;
  const even = wrong.filter((_, i) => i % 2 === 0);
  const odd = wrong.filter((_, i) => i % 2 === 1);
  const noise = Math.abs(median(even) - median(odd));
  lines.push(
    '',
    `Answer time of refused sign-ins (${SAMPLES} interleaved samples each, sequential)`,
    `  kind              median ms   p25 ms   p75 ms   gap vs wrong password`,
  );
  for (const kind of ['wrong_password', 'unknown_user', 'unknown_tenant', 'locked'] as const) {
    const xs = samples[kind];
    const gap = median(xs) - median(wrong);
    lines.push(
      `  ${kind.padEnd(16)} ${f(median(xs))} ${f(quantile(xs, 0.25))} ${f(quantile(xs, 0.75))} ${kind === 'wrong_password' ? '' : `${gap >= 0 ? '+' : ''}${gap.toFixed(2)} ms`}`,
    );
  }
  const gapUser = Math.abs(median(samples.unknown_user) - median(wrong));
  lines.push(
    `  noise: |median(even) - median(odd)| of wrong password = ${noise.toFixed(2)} ms; ` +
      `IQR of wrong password = ${(quantile(wrong, 0.75) - quantile(wrong, 0.25)).toFixed(2)} ms`,
    `  unknown user vs wrong password: gap ${gapUser.toFixed(2)} ms, ` +
      `${gapUser <= Math.max(noise, (quantile(wrong, 0.75) - quantile(wrong, 0.25)) / 2) ? 'within noise' : 'LARGER than noise'}`,
    '',
  );
  process.stdout.write(lines.join('\n'));
} finally {
  server.child.kill('SIGTERM');
}
