/**
 * `npm run bench:authz`: the permission model's cost on the list route. Lists 100 contacts per
 * request as an agent (own scope: the owner filter in SQL, sensitive fields masked) and as the
 * owner (all records, clear), in one run on one SQLite database, through the real app
 * (`app.inject`, one request at a time, alternating rounds). Prints requests/s, p99 and the
 * model's share of request time: the policy calls a list of 100 makes (the scope decision, and
 * `fieldAccess` for every field of every record, which the response shaping asks) timed directly
 * in the same process, divided by the measured mean request time. Goal: share < 10%.
 */
import { performance } from 'node:perf_hooks';
import { createTestContext, type Session } from '../test/helpers/context.ts';
import { contactSpec } from '../src/modules/contacts/spec.ts';
import { createRecordShaper } from '../src/modules/records/shape.ts';
import {
  authorizeScope,
  fieldAccess,
  fieldsOf,
  type Actor,
  type Role,
} from '../src/core/policy/index.ts';

const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 300);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const OTHERS = Number(process.env.BENCH_CONTACTS ?? 600);
const PAGE = 100;

const ctx = await createTestContext({ CUSTOS_LOG_LEVEL: 'warn' });
try {
  const owner = await ctx.tenant('bench');
  const agent = await ctx.user(owner, 'agent');
  const seed = async (s: Session, n: number, ownerId?: string) => {
    for (let i = 0; i < n; i++) {
      const res = await ctx.app.inject({
        method: 'POST',
        url: '/api/v1/contacts',
        headers: s.headers,
        payload: {
          firstName: 'Ada',
          lastName: `Person${i}`,
          email: `p${i}-${ownerId ?? 'o'}@load.example`,
          phone: '+14155550100',
          title: 'Buyer',
          dateOfBirth: '1980-02-03',
          nationalId: '123-45-6789',
          ...(ownerId ? { ownerId } : {}),
        },
      });
      if (res.statusCode !== 201) throw new Error(`seed: ${res.statusCode} ${res.body}`);
    }
  };
  // The agent owns 150 of the contacts; the owner sees them all.
  await seed(owner, OTHERS);
  await seed(owner, 150, agent.userId);

  async function run(s: Session): Promise<number[]> {
    const times: number[] = [];
    for (let i = 0; i < REQUESTS; i++) {
      const t0 = performance.now();
      const res = await ctx.app.inject({
        url: `/api/v1/contacts?limit=${PAGE}`,
        headers: s.headers,
      });
      times.push(performance.now() - t0);
      if (res.statusCode !== 200) throw new Error(`list: ${res.statusCode}`);
      if (i === 0 && res.json<{ items: unknown[] }>().items.length !== PAGE) {
        throw new Error('a page of 100 expected');
      }
    }
    return times;
  }

  /** The decision calls one list request makes for `actor`, timed over many repetitions. */
  function policyMsPerRequest(actor: Actor): number {
    const fields = fieldsOf('contact').map((f) => f.field);
    const once = () => {
      authorizeScope(actor, 'read', 'contact');
      for (let r = 0; r < PAGE; r++) for (const f of fields) fieldAccess(actor, 'contact', f);
    };
    for (let i = 0; i < 50; i++) once();
    const n = 500;
    const t0 = performance.now();
    for (let i = 0; i < n; i++) once();
    return (performance.now() - t0) / n;
  }

  /** The response shaping (masking) of one page for `actor`, over a page of clear records. */
  const clearPage = (
    await ctx.app.inject({ url: `/api/v1/contacts?limit=${PAGE}`, headers: owner.headers })
  ).json<{ items: Record<string, unknown>[] }>().items;
  const shaper = createRecordShaper(contactSpec);
  function shapingMsPerRequest(actor: Actor): number {
    const once = () => {
      const view = shaper.view(actor);
      for (const item of clearPage) shaper.shape(view, item);
    };
    for (let i = 0; i < 50; i++) once();
    const n = 500;
    const t0 = performance.now();
    for (let i = 0; i < n; i++) once();
    return (performance.now() - t0) / n;
  }

  const actorOf = (s: Session, role: Role): Actor => ({
    kind: 'user',
    tenantId: s.tenantId,
    userId: s.userId,
    role,
    sessionId: 'bench',
    authenticatedAt: null,
    request: { requestId: 'bench', ip: null, userAgent: null },
  });

  const samples: Record<'agent' | 'owner', number[]> = { agent: [], owner: [] };
  for (let round = 0; round < ROUNDS; round++) {
    const order = round % 2 === 0 ? (['agent', 'owner'] as const) : (['owner', 'agent'] as const);
    for (const who of order) samples[who].push(...(await run(who === 'agent' ? agent : owner)));
  }
  const lines: string[] = [];
  const means = { agent: 0, owner: 0 };
  for (const who of ['agent', 'owner'] as const) {
    const times = [...samples[who]].sort((a, b) => a - b);
    const mean = times.reduce((s, t) => s + t, 0) / times.length;
    const p99 = times[Math.floor(times.length * 0.99)] ?? 0;
    const policy = policyMsPerRequest(
      actorOf(who === 'agent' ? agent : owner, who === 'agent' ? 'agent' : 'owner'),
    );
    const shaping = shapingMsPerRequest(
      actorOf(who === 'agent' ? agent : owner, who === 'agent' ? 'agent' : 'owner'),
    );
    means[who] = mean;
    lines.push(
      `${who === 'agent' ? 'agent (own, masked)' : 'owner (all, clear) '}  ${(1000 / mean).toFixed(0).padStart(5)} req/s  p99 ${p99.toFixed(1)} ms  mean ${mean.toFixed(2)} ms  policy ${(policy * 1000).toFixed(0)} us/request = ${((policy / mean) * 100).toFixed(1)}% of request time; with masking ${((policy + shaping) * 1000).toFixed(0)} us = ${(((policy + shaping) / mean) * 100).toFixed(1)}%`,
    );
  }
  process.stdout.write(
    `\nAuthorization benchmark: GET /api/v1/contacts?limit=${PAGE} (${ROUNDS} alternating rounds of ${REQUESTS} sequential requests, SQLite, ${OTHERS + 150} contacts)\n${lines.join('\n')}\nagent request vs owner request: ${(((means.agent - means.owner) / means.agent) * 100).toFixed(1)}% of the agent's time (own-scope SQL, masking, and the data itself differ)\nGoal: policy share < 10%\n`,
  );
} finally {
  await ctx.close();
}
