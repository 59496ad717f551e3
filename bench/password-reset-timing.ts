/**
 * `npx tsx bench/password-reset-timing.ts`: how long `POST /api/v1/auth/password-reset` takes for
 * an existing user and for an unknown address in the same tenant, alternating one of each so
 * machine noise hits both alike. Prints the median and 90th percentile of each and their ratio
 * (the answer must not tell whether the account exists). `BENCH_REQUESTS` (default 300 of each).
 * SQLite in a temporary directory; PostgreSQL when CUSTOS_TEST_DATABASE_URL is set.
 */
import { performance } from 'node:perf_hooks';
import { createTestContext } from '../test/helpers/context.ts';

const N = Number(process.env.BENCH_REQUESTS ?? 300);

const ctx = await createTestContext({
  CUSTOS_LOGIN_FAILURES_PER_ADDRESS_PER_DAY: '1000000',
  CUSTOS_LOG_LEVEL: 'silent',
});
try {
  const owner = await ctx.tenant();
  const time = async (email: string, i: number) => {
    const started = performance.now();
    const res = await ctx.app.inject({
      method: 'POST',
      url: '/api/v1/auth/password-reset',
      payload: { tenant: owner.tenant, email },
      remoteAddress: `10.0.${(i >> 8) & 255}.${i & 255}`,
    });
    if (res.statusCode !== 202) throw new Error(`unexpected ${res.statusCode}`);
    return performance.now() - started;
  };
  const known: number[] = [];
  const unknown: number[] = [];
  for (let i = 0; i < 20; i++) await time(owner.email, i); // warm-up
  for (let i = 0; i < N; i++) {
    known.push(await time(owner.email, 2 * i));
    unknown.push(await time(`nobody-${i}@${owner.tenant}.example`, 2 * i + 1));
  }
  await ctx.services.mailer.settled();
  const q = (xs: number[], p: number) =>
    [...xs].sort((a, b) => a - b)[Math.floor(p * (xs.length - 1))]!;
  const row = (name: string, xs: number[]) =>
    `${name.padEnd(8)} median ${q(xs, 0.5).toFixed(2)} ms   p90 ${q(xs, 0.9).toFixed(2)} ms`;
  console.log(`${ctx.database.handle.dialect}, ${N} requests of each`);
  console.log(row('known', known));
  console.log(row('unknown', unknown));
  console.log(`ratio of medians known/unknown: ${(q(known, 0.5) / q(unknown, 0.5)).toFixed(2)}`);
} finally {
  await ctx.close();
}
