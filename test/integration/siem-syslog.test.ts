import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sendSyslogBatch, SyslogDeliveryError } from '../../src/core/siem/index.ts';
import { createSyslogDestination } from '../../src/modules/siem/destinations.ts';
import { createSiemWorker } from '../../src/modules/siem/worker.ts';
import type { Session } from '../helpers/context.ts';
import type { Rsyslog } from '../helpers/rsyslog.ts';
import { startRsyslog } from '../helpers/rsyslog.ts';
import {
  allEventIds,
  createSiemTestContext,
  cursorTotal,
  eventually,
  QUICK_SIEM_LOOP,
  receivedIds,
  type SiemTestContext,
} from '../helpers/siem.ts';

let rsyslog: Rsyslog;
let ctx: SiemTestContext;
let owner: Session;
let url: string;

beforeAll(async () => {
  rsyslog = await startRsyslog();
  url = `tcp://127.0.0.1:${rsyslog.port}`;
  ctx = await createSiemTestContext(
    {
      CUSTOS_SIEM_SYSLOG_URL: url,
      CUSTOS_SIEM_FORMAT: 'json',
      CUSTOS_SIEM_BATCH_SIZE: '7',
      ...QUICK_SIEM_LOOP,
    },
    () => rsyslog.dispose(),
  );
  owner = ctx.owner;
});
afterAll(async () => ctx?.close());

const db = () => ctx.database.handle.db;
const treeTotal = async () => {
  const rows = await db().selectFrom('audit_tree').select('tree_size').execute();
  return rows.reduce((sum, r) => sum + Number(r.tree_size), 0);
};

/** Audit events of several kinds, in two tenants. */
async function produceEvents(count: number, session = owner) {
  for (let i = 0; i < count; i++) {
    const res = await ctx.app.inject({
      method: 'POST',
      url: '/api/v1/companies',
      headers: session.headers,
      payload: { name: `Company ${i} "quoted" ] \\ é` },
    });
    expect(res.statusCode).toBe(201);
  }
  const failed = await ctx.app.inject({
    method: 'POST',
    url: '/api/v1/auth/login',
    payload: {
      tenant: session.tenant,
      email: 'nobody@example.com',
      password: 'wrong password 123',
    },
  });
  expect(failed.statusCode).toBe(401);
}

describe('SIEM streaming to rsyslog over TCP', () => {
  it('sends every audit event as RFC 5424 with the ids in structured data and OCSF JSON', async () => {
    await produceEvents(3);
    const result = await ctx.services.siem.runOnce();
    expect(result.failed).toEqual([]);
    const ids = await allEventIds(db());
    expect(result.delivered).toBe(ids.length);
    const lines = await rsyslog.waitFor((l) => receivedIds(l).size >= ids.length);
    expect(receivedIds(lines)).toEqual(new Set(ids));
    const login = lines.find((l) => l.includes(' auth.login.succeeded '))!;
    expect(login).toMatch(
      /^<110>1 \d{4}-\d\d-\d\dT[\d:.]+Z \S+ custos - auth\.login\.succeeded \[custos@32473 tenant="[^"]+" eventId="[^"]+" leafIndex="\d+" leafHash="[0-9a-f]{64}"\] \{/,
    );
    const ocsf = JSON.parse(login.slice(login.indexOf('] {') + 2));
    expect(ocsf).toMatchObject({ class_uid: 3002, activity_id: 1, status_id: 1, severity_id: 1 });
    expect(ocsf.metadata.tenant_uid).toBe(owner.tenantId);
    const failed = lines.find((l) => l.includes(' auth.login.failed '))!;
    expect(JSON.parse(failed.slice(failed.indexOf('] {') + 2))).toMatchObject({
      class_uid: 3002,
      status_id: 2,
      status_detail: 'unknown_user',
    });
    expect(await cursorTotal(db(), 'syslog')).toBe(await treeTotal());
  });

  it('delivers every event produced while rsyslog is stopped once it runs again', async () => {
    const worker = ctx.services.siem;
    worker.start();
    await rsyslog.stop();
    const other = await ctx.tenant();
    await produceEvents(12);
    await produceEvents(5, other);
    // The worker keeps failing (and backing off) while the receiver is gone; nothing is lost.
    expect(await eventually(() => worker.failures('syslog') >= 2)).toBe(true);
    expect(await cursorTotal(db(), 'syslog')).toBeLessThan(await treeTotal());
    const before = new Set(rsyslog.lines());

    await rsyslog.start();
    const ids = await allEventIds(db());
    const arrived = await eventually(
      async () => [...ids].every((id) => receivedIds(rsyslog.lines()).has(id)),
      20_000,
    );
    await worker.stop();
    const received = receivedIds(rsyslog.lines());
    expect(ids.filter((id) => !received.has(id))).toEqual([]);
    expect(arrived).toBe(true);
    expect(rsyslog.lines().filter((l) => !before.has(l)).length).toBeGreaterThanOrEqual(17);
    expect(worker.failures('syslog')).toBe(0);
    expect(await cursorTotal(db(), 'syslog')).toBe(await treeTotal());
  });

  it('a restarted Custos resumes from the stored cursor', async () => {
    await rsyslog.stop();
    const cursor = await cursorTotal(db(), 'syslog');
    await produceEvents(4);
    // "Process 1": fails while the receiver is down and keeps nothing in memory that matters.
    const first = createSiemWorker({
      db: db(),
      clock: ctx.clock,
      destinations: [createSyslogDestination({ url, format: 'json', timeoutMs: 2000 })],
    });
    expect(await first.runOnce()).toEqual({ delivered: 0, failed: ['syslog'] });
    expect(await cursorTotal(db(), 'syslog')).toBe(cursor);
    await first.stop();

    await rsyslog.start();
    // "Process 2": a new worker over the same database delivers exactly what is pending.
    const second = createSiemWorker({
      db: db(),
      clock: ctx.clock,
      destinations: [createSyslogDestination({ url, format: 'json', timeoutMs: 2000 })],
    });
    const total = await treeTotal();
    expect(await second.runOnce()).toEqual({ delivered: total - cursor, failed: [] });
    const ids = await allEventIds(db());
    const lines = await rsyslog.waitFor((l) => ids.every((id) => receivedIds(l).has(id)));
    expect(ids.filter((id) => !receivedIds(lines).has(id))).toEqual([]);
    expect(await second.runOnce()).toEqual({ delivered: 0, failed: [] });
  });
});

describe('what counts as delivered over plain TCP', () => {
  /** A receiver that misbehaves in a given way; records how many bytes it read. */
  async function receiver(behave: (socket: net.Socket) => void) {
    // Half-open allowed: the receiver decides when (and whether) to close its side.
    const sockets = new Set<net.Socket>();
    const server = net.createServer({ allowHalfOpen: true }, (socket) => {
      sockets.add(socket);
      behave(socket);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as net.AddressInfo).port;
    return {
      port,
      close: () =>
        new Promise<void>((resolve) => {
          for (const socket of sockets) socket.destroy();
          server.close(() => resolve());
        }),
    };
  }
  const frames = [Buffer.from('5 hello'), Buffer.alloc(256 * 1024, 0x41)];

  it('is not a batch the receiver reset after reading part of it', async () => {
    const r = await receiver((s) => s.once('data', () => s.resetAndDestroy()));
    const error = await sendSyslogBatch(
      { transport: 'tcp', host: '127.0.0.1', port: r.port },
      frames,
    ).catch((e: unknown) => e);
    await r.close();
    expect(error).toBeInstanceOf(SyslogDeliveryError);
    expect((error as SyslogDeliveryError).code).toMatch(/reset|unconfirmed/);
  });

  it('is not a batch the receiver never confirmed by closing', async () => {
    const r = await receiver((s) => s.on('data', () => undefined));
    const error = await sendSyslogBatch(
      { transport: 'tcp', host: '127.0.0.1', port: r.port, timeoutMs: 300 },
      frames,
    ).catch((e: unknown) => e);
    await r.close();
    expect((error as SyslogDeliveryError).code).toBe('timeout');
  });

  it('is a batch the receiver read to the end and then closed', async () => {
    let read = 0;
    const r = await receiver((s) => {
      s.on('data', (d: Buffer) => (read += d.length));
      s.on('end', () => s.end());
    });
    await sendSyslogBatch({ transport: 'tcp', host: '127.0.0.1', port: r.port }, frames);
    await r.close();
    expect(read).toBe(7 + 256 * 1024);
  });
});
