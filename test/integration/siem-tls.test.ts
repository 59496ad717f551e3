import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseCefExtension } from '../../src/core/siem/index.ts';
import { createSyslogDestination } from '../../src/modules/siem/destinations.ts';
import { createSiemWorker } from '../../src/modules/siem/worker.ts';
import type { Session } from '../helpers/context.ts';
import type { Rsyslog } from '../helpers/rsyslog.ts';
import {
  clientCertificate,
  selfSignedCertificate,
  startRsyslog,
  type TlsFiles,
} from '../helpers/rsyslog.ts';
import {
  allEventIds,
  createSiemTestContext,
  cursorTotal,
  receivedIds,
  type SiemTestContext,
} from '../helpers/siem.ts';

let dir: string;
let certs: TlsFiles;
let rsyslog: Rsyslog;
let port: number;
let ctx: SiemTestContext;
let owner: Session;

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'custos-siem-tls-'));
  const removeDir = async () => fs.rmSync(dir, { recursive: true, force: true });
  try {
    certs = selfSignedCertificate(dir);
    rsyslog = await startRsyslog(certs);
  } catch (error) {
    await removeDir();
    throw error;
  }
  port = rsyslog.port;
  ctx = await createSiemTestContext(
    {
      CUSTOS_SIEM_SYSLOG_URL: `tls://127.0.0.1:${port}`,
      CUSTOS_SIEM_FORMAT: 'cef',
      CUSTOS_SIEM_CA_FILE: certs.cert,
    },
    async () => {
      await rsyslog.dispose();
      await removeDir();
    },
  );
  owner = ctx.owner;
});
afterAll(async () => ctx?.close());

const db = () => ctx.database.handle.db;

/** Hostile user agents (header-safe: no CR, LF or NUL) in the style of the naughty-strings list. */
const HOSTILE_AGENTS = [
  'Mozilla/5.0 |CEF:0|Forged|Vendor|1|x|y|10| src=6.6.6.6',
  'agent\\ with = signs and \\= escapes act=auth.login.succeeded',
  '\'; DROP TABLE audit_events; -- ] [custos@32473 eventId="forged"]',
];

async function createCompany(userAgent: string) {
  const res = await ctx.app.inject({
    method: 'POST',
    url: '/api/v1/companies',
    headers: { ...owner.headers, 'user-agent': userAgent },
    payload: { name: 'Acme' },
  });
  expect(res.statusCode).toBe(201);
}

describe('SIEM streaming to rsyslog over TLS (gtls, self-signed CA)', () => {
  it('negotiates TLS 1.3 with the configured CA', async () => {
    const protocol = await new Promise<string | null>((resolve, reject) => {
      const s = tls.connect({ host: '127.0.0.1', port, ca: fs.readFileSync(certs.cert) }, () => {
        resolve(s.getProtocol());
        s.end();
      });
      s.once('error', reject);
    });
    expect(protocol).toBe('TLSv1.3');
  });

  it('delivers CEF messages with hostile values escaped, and no forged fields', async () => {
    for (const agent of HOSTILE_AGENTS) await createCompany(agent);
    expect((await ctx.services.siem.runOnce()).failed).toEqual([]);
    const ids = await allEventIds(db());
    const lines = await rsyslog.waitFor((l) => receivedIds(l).size >= ids.length);
    expect(receivedIds(lines)).toEqual(new Set(ids));
    // The forged SD in a user agent lives in MSG, escaped; the real SD is the first one.
    expect(receivedIds(lines).has('forged')).toBe(false);
    const cef = lines
      .filter((l) => l.includes(' record.created '))
      .map((l) => l.slice(l.indexOf('CEF:0|')));
    expect(cef).toHaveLength(HOSTILE_AGENTS.length);
    for (const [i, agent] of HOSTILE_AGENTS.entries()) {
      expect(
        cef[i]!.startsWith('CEF:0|Custos|Custos CRM|1|record.created|API Activity: Create|1|'),
      ).toBe(true);
      const ext = parseCefExtension(cef[i]!.slice(cef[i]!.indexOf('|1|') + 3));
      expect(ext.get('requestClientApplication')).toBe(agent);
      expect(ext.get('act')).toBe('record.created');
      expect(ext.get('cs1')).toBe(owner.tenantId);
      expect(ext.has('src') ? ext.get('src') : '127.0.0.1').not.toBe('6.6.6.6');
    }
  });

  it('loses nothing across a receiver restart', async () => {
    await rsyslog.stop();
    for (let i = 0; i < 5; i++) await createCompany('restart-test');
    expect(await ctx.services.siem.runOnce({ force: true })).toEqual({
      delivered: 0,
      failed: ['syslog'],
    });
    await rsyslog.start();
    const result = await ctx.services.siem.runOnce({ force: true });
    expect(result).toEqual({ delivered: 5, failed: [] });
    const ids = await allEventIds(db());
    const lines = await rsyslog.waitFor((l) => ids.every((id) => receivedIds(l).has(id)));
    expect(ids.filter((id) => !receivedIds(lines).has(id))).toEqual([]);
  });

  it('refuses a receiver whose certificate the configured CA does not vouch for', async () => {
    await createCompany('untrusted-test');
    const cursor = await cursorTotal(db(), 'syslog');
    const other = selfSignedCertificate(dir, 'other-ca');
    const errors: unknown[] = [];
    const worker = createSiemWorker({
      db: db(),
      clock: ctx.clock,
      destinations: [
        createSyslogDestination({
          url: `tls://127.0.0.1:${port}`,
          format: 'cef',
          ca: fs.readFileSync(other.cert, 'utf8'),
        }),
      ],
      onError: (_d, error) => errors.push(error),
    });
    expect(await worker.runOnce()).toEqual({ delivered: 0, failed: ['syslog'] });
    expect(String((errors[0] as Error).cause)).toMatch(
      /self[- ]signed|unable to verify|certificate/i,
    );
    expect(await cursorTotal(db(), 'syslog')).toBe(cursor);
  });

  it('presents the configured client certificate to a receiver that demands one', async () => {
    const strict = await startRsyslog(certs, true);
    const mtlsPort = strict.port;
    try {
      const client = clientCertificate(dir, certs);
      const destination = (withCert: boolean) =>
        createSyslogDestination({
          url: `tls://127.0.0.1:${mtlsPort}`,
          format: 'json',
          ca: fs.readFileSync(certs.cert, 'utf8'),
          timeoutMs: 5000,
          // Generous on a loaded test machine: rsyslog refuses within milliseconds.
          settleMs: 1000,
          ...(withCert
            ? {
                cert: fs.readFileSync(client.cert, 'utf8'),
                key: fs.readFileSync(client.key, 'utf8'),
              }
            : {}),
        });
      // Without a client certificate rsyslog accepts the TLS 1.3 handshake, then checks the
      // certificate and closes: before the settle time, so never counted as delivered (it used
      // to read and discard an at-once batch and close cleanly, which looked delivered).
      const refused = createSiemWorker({
        db: db(),
        clock: ctx.clock,
        destinations: [{ ...destination(false), id: 'syslog-mtls-refused' }],
      });
      for (let attempt = 0; attempt < 3; attempt++) {
        expect(await refused.runOnce({ force: true })).toEqual({
          delivered: 0,
          failed: ['syslog-mtls-refused'],
        });
      }
      expect(await cursorTotal(db(), 'syslog-mtls-refused')).toBe(0);
      // Its own cursor namespace: a fresh destination id keeps the main stream's cursor apart.
      const worker = createSiemWorker({
        db: db(),
        clock: ctx.clock,
        destinations: [{ ...destination(true), id: 'syslog-mtls' }],
      });
      const ids = await allEventIds(db());
      expect(await worker.runOnce()).toEqual({ delivered: ids.length, failed: [] });
      expect(await cursorTotal(db(), 'syslog-mtls')).toBe(ids.length);
      const lines = await strict.waitFor((l) => receivedIds(l).size >= ids.length);
      expect(receivedIds(lines)).toEqual(new Set(ids));
    } finally {
      await strict.dispose();
    }
  });
});
