import { createHmac, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createWebhookDestination } from '../../src/modules/siem/destinations.ts';
import { createSiemWorker } from '../../src/modules/siem/worker.ts';
import type { Session } from '../helpers/context.ts';
import { freePort } from '../helpers/rsyslog.ts';
import {
  allEventIds,
  createSiemTestContext,
  cursorTotal,
  eventually,
  QUICK_SIEM_LOOP,
  type SiemTestContext,
} from '../helpers/siem.ts';

const SECRET = 'webhook-secret-for-tests-0123456789abcdef';

/**
 * A SIEM webhook receiver as the README tells operators to write one: recompute
 * HMAC-SHA256(secret, timestamp + "." + raw body), compare in constant time, refuse old timestamps.
 */
class Receiver {
  readonly ids = new Set<string>();
  /** Every event received, as parsed. */
  readonly events: Record<string, unknown>[] = [];
  requests = 0;
  refused = 0;
  /** Answer this status to the next n requests (after verifying them). */
  failNext = 0;
  private server: http.Server | undefined;

  constructor(
    readonly port: number,
    readonly secret = SECRET,
  ) {}

  async start() {
    this.server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        this.requests++;
        const body = Buffer.concat(chunks);
        const timestamp = String(req.headers['x-custos-timestamp'] ?? '');
        const signature = String(req.headers['x-custos-signature'] ?? '');
        const expected = Buffer.from(
          `v1=${createHmac('sha256', this.secret).update(`${timestamp}.`).update(body).digest('hex')}`,
        );
        const fresh = Math.abs(Date.now() / 1000 - Number(timestamp)) <= 300;
        const given = Buffer.from(signature);
        if (!fresh || given.length !== expected.length || !timingSafeEqual(given, expected)) {
          this.refused++;
          res.writeHead(401).end();
          return;
        }
        if (this.failNext > 0) {
          this.failNext--;
          res.writeHead(503).end();
          return;
        }
        const parsed = JSON.parse(body.toString('utf8')) as {
          events: ({ metadata: { uid: string } } & Record<string, unknown>)[];
        };
        for (const e of parsed.events) this.ids.add(e.metadata.uid);
        this.events.push(...parsed.events);
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(this.port, '127.0.0.1', resolve));
  }

  async stop() {
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

let receiver: Receiver;
let ctx: SiemTestContext;
let owner: Session;
let url: string;

beforeAll(async () => {
  const port = await freePort();
  receiver = new Receiver(port);
  await receiver.start();
  url = `http://127.0.0.1:${port}/siem`;
  ctx = await createSiemTestContext(
    {
      CUSTOS_SIEM_WEBHOOK_URL: url,
      CUSTOS_SIEM_WEBHOOK_SECRET: SECRET,
      CUSTOS_SIEM_BATCH_SIZE: '4',
      ...QUICK_SIEM_LOOP,
    },
    () => receiver.stop(),
  );
  owner = ctx.owner;
});
afterAll(async () => ctx?.close());

const db = () => ctx.database.handle.db;
async function produceEvents(count: number) {
  for (let i = 0; i < count; i++) {
    const res = await ctx.app.inject({
      method: 'POST',
      url: '/api/v1/companies',
      headers: owner.headers,
      payload: { name: `Company ${i}` },
    });
    expect(res.statusCode).toBe(201);
  }
}

describe('SIEM webhooks', () => {
  it('posts signed batches of OCSF events that a receiver verifies', async () => {
    await produceEvents(5);
    const result = await ctx.services.siem.runOnce();
    expect(result.failed).toEqual([]);
    const ids = await allEventIds(db());
    expect(receiver.ids).toEqual(new Set(ids));
    expect(receiver.refused).toBe(0);
    // Batches of 4: several requests.
    expect(receiver.requests).toBe(Math.ceil(ids.length / 4));
  });

  it('batches events of many tenants together, each tenant in order', async () => {
    for (let i = 0; i < 5; i++) await ctx.tenant();
    const before = receiver.requests;
    const seen = receiver.ids.size;
    const result = await ctx.services.siem.runOnce();
    const ids = await allEventIds(db());
    expect(result).toEqual({ delivered: ids.length - seen, failed: [] });
    // Five quiet tenants, one sign-in each: two requests of up to 4 events, not five.
    expect(result.delivered).toBe(5);
    expect(receiver.requests - before).toBe(2);
    expect(receiver.ids).toEqual(new Set(ids));
  });

  it('delivers every event produced while the receiver is down once it is back', async () => {
    const worker = ctx.services.siem;
    worker.start();
    await receiver.stop();
    await produceEvents(9);
    expect(await eventually(() => worker.failures('webhook') >= 2)).toBe(true);
    const ids = await allEventIds(db());
    expect(ids.filter((id) => !receiver.ids.has(id))).toHaveLength(9);

    await receiver.start();
    expect(await eventually(() => ids.every((id) => receiver.ids.has(id)), 20_000)).toBe(true);
    await worker.stop();
    expect(ids.filter((id) => !receiver.ids.has(id))).toEqual([]);
  });

  it('resends a batch the receiver answered with an error', async () => {
    await produceEvents(2);
    receiver.failNext = 1;
    expect(await ctx.services.siem.runOnce({ force: true })).toEqual({
      delivered: 0,
      failed: ['webhook'],
    });
    expect(await ctx.services.siem.runOnce({ force: true })).toEqual({
      delivered: 2,
      failed: [],
    });
    const ids = await allEventIds(db());
    expect(ids.filter((id) => !receiver.ids.has(id))).toEqual([]);
  });

  it('is refused by a receiver holding another secret, and the cursor stays', async () => {
    await produceEvents(1);
    const cursor = await cursorTotal(db(), 'webhook');
    const wrong = createSiemWorker({
      db: db(),
      clock: ctx.clock,
      destinations: [
        createWebhookDestination({ url, secret: `${SECRET}-other`, clock: ctx.clock }),
      ],
    });
    const refused = receiver.refused;
    expect(await wrong.runOnce()).toEqual({ delivered: 0, failed: ['webhook'] });
    expect(receiver.refused).toBe(refused + 1);
    expect(await cursorTotal(db(), 'webhook')).toBe(cursor);
  });

  it('delivers security alerts: each is the signed audit event security.alert.raised', async () => {
    await db()
      .transaction()
      .execute((trx) =>
        ctx.services.auditLog.append(trx, {
          tenantId: owner.tenantId,
          type: 'auth.break_glass.opened',
          actor: { kind: 'user', id: owner.userId },
        }),
      );
    expect((await ctx.services.detectionWorker.runOnce()).alerts).toBeGreaterThanOrEqual(1);
    expect(
      await eventually(async () => (await ctx.services.siem.runOnce()).failed.length === 0),
    ).toBe(true);
    const alert = await db()
      .selectFrom('alerts')
      .select(['id'])
      .where('tenant_id', '=', owner.tenantId)
      .where('rule', '=', 'break_glass')
      .executeTakeFirstOrThrow();
    expect(receiver.events).toContainEqual(
      expect.objectContaining({
        message: 'security.alert.raised',
        status_detail: 'break_glass',
        metadata: expect.objectContaining({ tenant_uid: owner.tenantId }),
        unmapped: expect.objectContaining({
          custos: expect.objectContaining({ target: { type: 'alert', id: alert.id } }),
        }),
      }),
    );
  });

  it('refuses URLs that are not http(s)', () => {
    for (const bad of ['file:///etc/passwd', 'ftp://siem.example/x', 'data:,x']) {
      expect(() =>
        createWebhookDestination({ url: bad, secret: SECRET, clock: ctx.clock }),
      ).toThrow(TypeError);
    }
  });
});
