/**
 * `npm run bench` (first part): authenticated Custos routes against a bare Fastify + SQLite route
 * doing the same select/insert with no security, measured in the same run, alternating rounds so
 * that machine noise hits both. Prints requests/s, p99 latency and the ratio custos / bare.
 * Goal: authenticated GET >= 0.6 of the bare route.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import readline from 'node:readline';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';

const here = path.dirname(fileURLToPath(import.meta.url));
const DURATION_S = Number(process.env.BENCH_DURATION ?? 5);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const CONNECTIONS = 10;

interface Server {
  child: ChildProcess;
  port: number;
  headers: Record<string, string>;
  ids: string[];
}

async function start(mode: 'custos' | 'bare'): Promise<Server> {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(here, 'servers.ts'), mode], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const rl = readline.createInterface({ input: child.stdout });
  for await (const line of rl) {
    rl.close();
    return { child, ...(JSON.parse(line) as Omit<Server, 'child'>) };
  }
  throw new Error(`${mode} server did not start`);
}

interface Result {
  rps: number;
  p99: number;
  errors: number;
}

async function load(server: Server, kind: 'get' | 'post', prefix: string): Promise<Result> {
  let n = 0;
  const base = server.headers.cookie ? '/api/v1/contacts' : '/contacts';
  const result = await autocannon({
    url: `http://127.0.0.1:${server.port}`,
    connections: CONNECTIONS,
    duration: DURATION_S,
    requests: [
      kind === 'get'
        ? {
            method: 'GET',
            headers: server.headers,
            setupRequest: (req) => ({
              ...req,
              path: `${base}/${server.ids[n++ % server.ids.length]}`,
            }),
          }
        : {
            method: 'POST',
            path: base,
            headers: { ...server.headers, 'content-type': 'application/json' },
            setupRequest: (req) => {
              const i = n++;
              return {
                ...req,
                body: JSON.stringify({
                  firstName: 'New',
                  lastName: `Person${i}`,
                  email: `${prefix}-${i}@load.example`,
                  phone: '+14155550100',
                  title: 'Buyer',
                }),
              };
            },
          },
    ],
  });
  const ok = kind === 'get' ? result['2xx'] : result['2xx'];
  return { rps: ok / DURATION_S, p99: result.latency.p99, errors: result.non2xx + result.errors };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;

const custos = await start('custos');
const bare = await start('bare');
try {
  const table: string[] = [];
  for (const kind of ['get', 'post'] as const) {
    const runs: Record<'custos' | 'bare', Result[]> = { custos: [], bare: [] };
    for (let round = 0; round < ROUNDS; round++) {
      // Alternate which goes first, so drift in machine load does not favour one side.
      const order = round % 2 === 0 ? (['bare', 'custos'] as const) : (['custos', 'bare'] as const);
      for (const which of order) {
        runs[which].push(await load(which === 'custos' ? custos : bare, kind, `${which}${round}`));
      }
    }
    const c = median(runs.custos.map((r) => r.rps));
    const b = median(runs.bare.map((r) => r.rps));
    const errors = [...runs.custos, ...runs.bare].reduce((s, r) => s + r.errors, 0);
    table.push(
      `${kind === 'get' ? 'GET  /contacts/:id' : 'POST /contacts    '}  custos ${c.toFixed(0).padStart(6)} req/s p99 ${median(runs.custos.map((r) => r.p99))} ms | bare ${b.toFixed(0).padStart(6)} req/s p99 ${median(runs.bare.map((r) => r.p99))} ms | ratio ${(c / b).toFixed(2)}${errors ? ` | NON-2XX ${errors}` : ''}`,
    );
  }
  process.stdout.write(
    `\nAPI benchmark (${ROUNDS} alternating rounds of ${DURATION_S}s, ${CONNECTIONS} connections, medians; SQLite)\n${table.join('\n')}\nGoal: authenticated GET ratio >= 0.60\n`,
  );
} finally {
  custos.child.kill('SIGTERM');
  bare.child.kill('SIGTERM');
}
