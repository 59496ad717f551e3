import { execFileSync } from 'node:child_process';
import { createServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, describe, expect, it } from 'vitest';
import { createTestContext, PASSWORD, type TestContext } from '../helpers/context.ts';

/** A loopback port nothing listens on (bound, read, released). */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}

async function redisAnswers(port: number): Promise<boolean> {
  try {
    return (
      execFileSync('redis-cli', ['-p', String(port), 'ping'], { encoding: 'utf8' }).trim() ===
      'PONG'
    );
  } catch {
    return false;
  }
}

const contexts: TestContext[] = [];
const started: number[] = [];
afterAll(async () => {
  for (const port of started) {
    try {
      execFileSync('redis-cli', ['-p', String(port), 'shutdown', 'nosave'], { stdio: 'ignore' });
    } catch {
      // already down
    }
  }
  for (const ctx of contexts) await ctx.close();
});

/** A tenant created with the database alone (setup never touches Redis). */
async function contextWithRedis(url: string) {
  const ctx = await createTestContext({ CUSTOS_REDIS_URL: url });
  contexts.push(ctx);
  const slug = `redis${contexts.length}`;
  const { setupTenant } = await import('../../src/modules/tenants/service.ts');
  await setupTenant(
    { db: ctx.database.handle.db, clock: ctx.clock, users: ctx.services.userCrypto },
    { slug, name: 'R', ownerEmail: `o@${slug}.example`, ownerName: 'O', password: PASSWORD },
  );
  const signIn = (password = PASSWORD) =>
    ctx.app.inject({
      method: 'POST',
      url: '/api/v1/auth/login',
      payload: { tenant: slug, email: `o@${slug}.example`, password },
    });
  return { ctx, signIn };
}

function expectUnavailable(
  ctx: TestContext,
  res: Awaited<ReturnType<TestContext['app']['inject']>>,
) {
  expect(res.statusCode).toBe(503);
  expect(res.headers['content-type']).toContain('application/problem+json');
  const body = res.json<{ code: string; instance: string; detail: string }>();
  expect(body.code).toBe('server.unavailable');
  expect(body.detail).not.toContain('redis://');
  // The log names the reason under the request id.
  const line = ctx.logs.find((l) => l.includes(body.instance) && l.includes('redis'));
  expect(line).toBeDefined();
  expect(line).toContain('server.unavailable');
}

describe('sign-in while Redis is unreachable', () => {
  it('answers 503 server.unavailable, not 500, when nothing listens on the Redis port', async () => {
    const { ctx, signIn } = await contextWithRedis(`redis://127.0.0.1:${await closedPort()}`);
    const started = Date.now();
    const res = await signIn();
    expectUnavailable(ctx, res);
    expect(res.cookies).toHaveLength(0);
    // Fails fast: one reconnection attempt, not a long wait.
    expect(Date.now() - started).toBeLessThan(5_000);
    expectUnavailable(ctx, await signIn('a wrong password, still no answer'));
  });

  it('answers 503 once a real Redis goes away, and recovers when it is back', async () => {
    const port = await closedPort();
    const start = () =>
      execFileSync('redis-server', ['--port', String(port), '--save', '', '--daemonize', 'yes'], {
        stdio: 'ignore',
      });
    start();
    started.push(port);
    for (let i = 0; i < 50 && !(await redisAnswers(port)); i++) await sleep(50);
    const { ctx, signIn } = await contextWithRedis(`redis://127.0.0.1:${port}`);
    expect((await signIn()).statusCode).toBe(200);
    expect((await signIn('not the right password')).statusCode).toBe(401);

    execFileSync('redis-cli', ['-p', String(port), 'shutdown', 'nosave'], { stdio: 'ignore' });
    for (let i = 0; i < 50 && (await redisAnswers(port)); i++) await sleep(50);
    expectUnavailable(ctx, await signIn());

    start();
    for (let i = 0; i < 50 && !(await redisAnswers(port)); i++) await sleep(50);
    let res = await signIn();
    for (let i = 0; i < 20 && res.statusCode === 503; i++) {
      await sleep(100);
      res = await signIn();
    }
    expect(res.statusCode).toBe(200);
  });
});
