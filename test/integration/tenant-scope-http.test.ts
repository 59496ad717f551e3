import http from 'node:http';
import cookie from '@fastify/cookie';
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { currentScope, type TenantScope } from '../../src/db/tenant-scope.ts';
import { registerAuthentication } from '../../src/http/auth.ts';
import { sendProblem, toAppError } from '../../src/http/errors.ts';
import { createTestContext, type Session, type TestContext } from '../helpers/context.ts';

/**
 * The tenant scope an HTTP request runs in, stage by stage, on either database: whatever the
 * request's code touches (its hooks, its handler, the hooks after the answer) must see the
 * caller's tenant once the authentication hook knows it, including after a body was read from
 * the socket (which runs outside the request's async context) and after the response finished.
 */
describe('tenant scope of an HTTP request', () => {
  let ctx: TestContext;
  let a: Session;
  let probe: FastifyInstance;
  let seen: Array<[stage: string, scope: TenantScope | undefined]>;
  let base: string;

  beforeAll(async () => {
    ctx = await createTestContext();
    a = await ctx.tenant();
    probe = Fastify();
    await probe.register(cookie);
    probe.setErrorHandler((error, request, reply) =>
      sendProblem(request, reply, toAppError(error)),
    );
    registerAuthentication(probe, ctx.services.auth);
    const record = (stage: string) => seen.push([stage, currentScope()]);
    const hooks = {
      preHandler: (_r: FastifyRequest, _p: unknown, done: () => void) => {
        record('preHandler');
        done();
      },
      onSend: (_r: FastifyRequest, _p: unknown, payload: unknown, done: () => void) => {
        record('onSend');
        done();
      },
      onResponse: (_r: FastifyRequest, _p: unknown, done: () => void) => {
        record('onResponse');
        done();
      },
      onError: (_r: FastifyRequest, _p: unknown, _e: unknown, done: () => void) => {
        record('onError');
        done();
      },
    };
    const handler = async () => {
      await new Promise((resolve) => setImmediate(resolve));
      record('handler');
      return { ok: true };
    };
    probe.get('/api/v1/probe', hooks, handler);
    probe.post('/api/v1/probe', hooks, handler);
    base = await probe.listen({ host: '127.0.0.1', port: 0 });
  });
  afterAll(async () => {
    await probe?.close();
    await ctx?.close();
  });
  beforeEach(() => {
    seen = [];
  });

  /** Waits for the hooks that run after the answer was sent. */
  const settled = () => new Promise((resolve) => setTimeout(resolve, 20));
  /** What `seen` holds when each of `stages` ran in `scope`. */
  const stagesIn = (scope: object, stages: string[]) => stages.map((stage) => [stage, scope]);
  const ANSWERED = ['preHandler', 'handler', 'onSend', 'onResponse'];
  const REFUSED = ['onError', 'onSend', 'onResponse'];

  it("runs every stage of a GET in the caller's tenant", async () => {
    const res = await probe.inject({ url: '/api/v1/probe', headers: a.headers });
    expect(res.statusCode).toBe(200);
    await settled();
    const tenant = { kind: 'tenant', tenantId: a.tenantId };
    expect(seen).toEqual(stagesIn(tenant, ANSWERED));
  });

  it("runs every stage of a POST in the caller's tenant once its body is read", async () => {
    // Over a real socket, sent in two parts: the body arrives in socket events, outside the
    // request's async context (an injected body would not leave it).
    const status = await new Promise<number>((resolve, reject) => {
      const req = http.request(
        `${base}/api/v1/probe`,
        { method: 'POST', headers: { ...a.headers, 'content-type': 'application/json' } },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on('error', reject);
      req.write('{"a":');
      setTimeout(() => req.end('1}'), 20);
    });
    expect(status).toBe(200);
    await settled();
    const tenant = { kind: 'tenant', tenantId: a.tenantId };
    expect(seen).toEqual(stagesIn(tenant, ANSWERED));
  });

  it("keeps the caller's tenant when the body cannot be parsed", async () => {
    const res = await probe.inject({
      method: 'POST',
      url: '/api/v1/probe',
      headers: { ...a.headers, 'content-type': 'application/json' },
      payload: '{"a":',
    });
    expect(res.statusCode).toBe(400);
    await settled();
    const tenant = { kind: 'tenant', tenantId: a.tenantId };
    expect(seen).toEqual(stagesIn(tenant, REFUSED));
  });

  it('runs a refused request in the pre-auth system scope only', async () => {
    const res = await probe.inject({ url: '/api/v1/probe' });
    expect(res.statusCode).toBe(401);
    await settled();
    const system = { kind: 'system', reason: 'pre-auth' };
    expect(seen).toEqual(stagesIn(system, REFUSED));
  });
});
