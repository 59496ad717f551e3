import fs from 'node:fs';
import path from 'node:path';
import {
  constants,
  createDecipheriv,
  createPublicKey,
  generateKeyPairSync,
  privateDecrypt,
  type JsonWebKey,
  type KeyObject,
} from 'node:crypto';
import { parse } from 'csv-parse/sync';
import { calculateJwkThumbprint, compactDecrypt, decodeProtectedHeader, exportJWK } from 'jose';
import type { LightMyRequestResponse } from 'fastify';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { runCli } from '../../src/cli/main.ts';
import { FRESH_AUTH_MS } from '../../src/core/policy/fresh-auth.ts';
import { createTestContext, type Session, type TestContext } from '../helpers/context.ts';

let ctx: TestContext;

interface Pair {
  publicKey: KeyObject;
  privateKey: KeyObject;
  publicPem: string;
  privatePem: string;
}

function rsaPair(bits: number): Pair {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: bits });
  return {
    publicKey,
    privateKey,
    publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    privatePem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
  };
}

let recipient: Pair;
let stranger: Pair;

beforeAll(async () => {
  ctx = await createTestContext();
  recipient = rsaPair(2048);
  stranger = rsaPair(2048);
});
afterAll(async () => ctx?.close());

/**
 * Opens a compact JWE with node:crypto alone, following RFC 7516 section 5.2 and RFC 7518
 * sections 4.3 and 5.3, to show that nothing Custos- or jose-specific is needed: RSA-OAEP with
 * SHA-256 (and MGF1-SHA-256) unwraps the content key, AES-256-GCM decrypts with the ASCII of the
 * encoded protected header as additional authenticated data.
 */
function openWithNodeCrypto(jwe: string, privateKey: KeyObject) {
  const parts = jwe.split('.');
  if (parts.length !== 5) throw new Error('not a compact JWE');
  const [encodedHeader, encryptedKey, iv, ciphertext, tag] = parts as [
    string,
    string,
    string,
    string,
    string,
  ];
  const header = JSON.parse(Buffer.from(encodedHeader, 'base64url').toString('utf8')) as Record<
    string,
    string
  >;
  if (header.alg !== 'RSA-OAEP-256' || header.enc !== 'A256GCM') throw new Error('algorithms');
  const cek = privateDecrypt(
    { key: privateKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' },
    Buffer.from(encryptedKey, 'base64url'),
  );
  expect(cek).toHaveLength(32);
  const ivBytes = Buffer.from(iv, 'base64url');
  expect(ivBytes).toHaveLength(12);
  const decipher = createDecipheriv('aes-256-gcm', cek, ivBytes, { authTagLength: 16 });
  decipher.setAAD(Buffer.from(encodedHeader, 'ascii'));
  decipher.setAuthTag(Buffer.from(tag, 'base64url'));
  const plaintext = Buffer.concat([
    decipher.update(Buffer.from(ciphertext, 'base64url')),
    decipher.final(),
  ]);
  return { header, plaintext: plaintext.toString('utf8') };
}

/** UTF-8 keeping a byte order mark (the CSV export starts with one). */
const utf8 = (bytes: Uint8Array) => new TextDecoder('utf-8', { ignoreBOM: true }).decode(bytes);

const create = (s: Session, payload: object) =>
  ctx.app.inject({ method: 'POST', url: '/api/v1/contacts', headers: s.headers, payload });

const sealedExport = (s: Session, payload: object) =>
  ctx.app.inject({
    method: 'POST',
    url: '/api/v1/contacts/export',
    headers: s.headers,
    payload,
  });

const expectCode = (res: LightMyRequestResponse, status: number, code: string) => {
  expect(res.statusCode).toBe(status);
  expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
  expect(res.json().code).toBe(code);
};

const csvCells = (csv: string): string[][] => parse(csv.replace(/^\uFEFF/, ''), { bom: false });

async function exportEvents(tenantId: string) {
  return ctx.database.handle.db
    .selectFrom('audit_events')
    .select(['type', 'actor_kind', 'actor_id', 'target_type', 'target_id', 'reason', 'fields'])
    .where('tenant_id', '=', tenantId)
    .where('type', '=', 'contacts.exported')
    .orderBy('leaf_index')
    .execute();
}

const ADA = {
  firstName: 'Ada',
  lastName: 'Lovelace',
  email: 'ada.marker-7f3c@engines.example',
  phone: '+44 20 7946 0958',
  nationalId: 'QQ 12 34 56 C',
  notes: 'marker-notes-91b2 "quoted", =formula',
};

describe('encrypted contact export (POST /api/v1/contacts/export)', () => {
  it('answers a compact JWE, RSA-OAEP-256 + A256GCM, that jose and bare node:crypto both open', async () => {
    const s = await ctx.tenant();
    expect((await create(s, ADA)).statusCode).toBe(201);
    const res = await sealedExport(s, { recipientKey: recipient.publicPem });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toBe('application/jose');
    expect(res.headers['content-disposition']).toBe('attachment; filename="contacts.csv.jwe"');
    expect(res.headers['cache-control']).toBe('no-store');
    const jwe = res.body;
    expect(jwe).toMatch(/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]*){4}$/);
    for (const marker of ['marker-7f3c', 'marker-notes-91b2', 'Lovelace']) {
      expect(jwe).not.toContain(marker);
      expect(Buffer.from(jwe.split('.')[3]!, 'base64url').toString('latin1')).not.toContain(marker);
    }
    const kid = await calculateJwkThumbprint(await exportJWK(recipient.publicKey), 'sha256');
    expect(decodeProtectedHeader(jwe)).toEqual({
      alg: 'RSA-OAEP-256',
      enc: 'A256GCM',
      kid,
      cty: 'text/csv; charset=utf-8',
    });

    const viaJose = utf8((await compactDecrypt(jwe, recipient.privateKey)).plaintext);
    const viaNode = openWithNodeCrypto(jwe, recipient.privateKey);
    expect(viaNode.plaintext).toBe(viaJose);
    const rows = csvCells(viaNode.plaintext);
    expect(rows).toHaveLength(2);
    const record = Object.fromEntries(rows[0]!.map((h, i) => [h, rows[1]![i]]));
    // CSV neutralises the leading "+" of the phone for spreadsheets.
    expect(record).toMatchObject({ ...ADA, phone: `'${ADA.phone}` });
    // The plain export of the same tenant is the same bytes.
    const plain = await ctx.app.inject({ url: '/api/v1/contacts/export', headers: s.headers });
    expect(plain.body).toBe(viaNode.plaintext);
  });

  it('seals JSON for a JWK recipient; the payload equals the plain JSON export', async () => {
    const s = await ctx.tenant();
    const company = await ctx.app.inject({
      method: 'POST',
      url: '/api/v1/companies',
      headers: s.headers,
      payload: { name: 'Analytical Engines' },
    });
    await create(s, { ...ADA, companyId: company.json().id });
    await create(s, { firstName: 'Zoë', lastName: 'Ñúñez 山田' });
    const plain = await ctx.app.inject({
      url: '/api/v1/contacts/export?format=json',
      headers: s.headers,
    });
    expect(plain.statusCode).toBe(200);
    expect(plain.headers['content-type']).toBe('application/json; charset=utf-8');
    const list = JSON.parse(plain.body) as Record<string, string | null>[];
    expect(list).toHaveLength(2);
    expect(list[0]).toMatchObject({ ...ADA, company: 'Analytical Engines' });
    expect(list[1]).toMatchObject({ firstName: 'Zoë', email: null, company: null });

    const jwk = recipient.publicKey.export({ format: 'jwk' });
    const res = await sealedExport(s, { format: 'json', recipientJwk: { ...jwk, use: 'enc' } });
    expect(res.statusCode).toBe(200);
    const opened = openWithNodeCrypto(res.body, recipient.privateKey);
    expect(opened.header.cty).toBe('application/json; charset=utf-8');
    expect(JSON.parse(opened.plaintext)).toEqual(list);
  });

  it('cannot be opened with another private key', async () => {
    const s = await ctx.tenant();
    await create(s, ADA);
    const jwe = (await sealedExport(s, { recipientKey: recipient.publicPem })).body;
    await expect(compactDecrypt(jwe, stranger.privateKey)).rejects.toMatchObject({
      code: 'ERR_JWE_DECRYPTION_FAILED',
    });
    expect(() => openWithNodeCrypto(jwe, stranger.privateKey)).toThrow();
    // Nor after a flipped ciphertext bit, with the right key.
    const parts = jwe.split('.');
    const ct = Buffer.from(parts[3]!, 'base64url');
    ct[0] = ct[0]! ^ 1;
    parts[3] = ct.toString('base64url');
    expect(() => openWithNodeCrypto(parts.join('.'), recipient.privateKey)).toThrow(/authenticate/);
  });

  it('refuses recipient keys that are not RSA public keys of 2048 bits or more', async () => {
    const s = await ctx.tenant();
    const weak = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey;
    expectCode(
      await sealedExport(s, { recipientKey: weak.export({ type: 'spki', format: 'pem' }) }),
      400,
      'export.recipient_key_too_weak',
    );
    expectCode(
      await sealedExport(s, { recipientJwk: weak.export({ format: 'jwk' }) }),
      400,
      'export.recipient_key_too_weak',
    );
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey;
    const ed = generateKeyPairSync('ed25519').publicKey;
    const pkcs1 = recipient.publicKey.export({ type: 'pkcs1', format: 'pem' }).toString();
    const invalid: object[] = [
      { recipientKey: ec.export({ type: 'spki', format: 'pem' }) },
      { recipientKey: ed.export({ type: 'spki', format: 'pem' }) },
      { recipientKey: recipient.privatePem },
      { recipientKey: 'not a key' },
      { recipientKey: recipient.publicPem.slice(0, 200) + recipient.publicPem.slice(-30) },
      { recipientJwk: ec.export({ format: 'jwk' }) },
      { recipientJwk: recipient.privateKey.export({ format: 'jwk' }) },
      { recipientJwk: { kty: 'RSA', n: 'AQAB' } },
      { recipientJwk: { kty: 'oct', k: 'c2VjcmV0' } },
    ];
    for (const payload of invalid) {
      expectCode(await sealedExport(s, payload), 400, 'export.recipient_key_invalid');
    }
    // PKCS#1 "RSA PUBLIC KEY" is accepted as well as SPKI.
    expect((await sealedExport(s, { recipientKey: pkcs1 })).statusCode).toBe(200);
    expectCode(await sealedExport(s, {}), 400, 'request.invalid');
    expectCode(
      await sealedExport(s, {
        recipientKey: recipient.publicPem,
        recipientJwk: recipient.publicKey.export({ format: 'jwk' }),
      }),
      400,
      'request.invalid',
    );
    expectCode(
      await sealedExport(s, { recipientKey: recipient.publicPem, format: 'xml' }),
      400,
      'request.invalid',
    );
    // No refused attempt was recorded as an export.
    expect((await exportEvents(s.tenantId)).map((e) => e.reason)).toEqual(['csv+jwe']);
  });

  it('needs a fresh authentication and the export permission', async () => {
    const owner = await ctx.tenant();
    const viewer = await ctx.user(owner, 'viewer');
    expectCode(
      await sealedExport(viewer, { recipientKey: recipient.publicPem }),
      403,
      'policy.forbidden',
    );
    ctx.clock.advance(FRESH_AUTH_MS + 1000);
    // Refused before the key is even looked at.
    expectCode(await sealedExport(owner, { recipientKey: 'junk' }), 401, 'auth.step_up_required');
    expectCode(
      await sealedExport(owner, { recipientKey: recipient.publicPem }),
      401,
      'auth.step_up_required',
    );
    expect(await exportEvents(owner.tenantId)).toEqual([]);
    const stepped = await ctx.stepUp(owner, 'correct horse battery staple');
    expect(stepped.statusCode).toBe(200);
    expect((await sealedExport(owner, { recipientKey: recipient.publicPem })).statusCode).toBe(200);
  });

  it('audits every export with its format and, when sealed, the recipient key thumbprint', async () => {
    const s = await ctx.tenant();
    await create(s, ADA);
    await ctx.app.inject({ url: '/api/v1/contacts/export', headers: s.headers });
    await ctx.app.inject({ url: '/api/v1/contacts/export?format=json', headers: s.headers });
    await sealedExport(s, { format: 'json', recipientKey: recipient.publicPem });
    const kid = await calculateJwkThumbprint(await exportJWK(recipient.publicKey), 'sha256');
    const events = await exportEvents(s.tenantId);
    expect(events.map((e) => [e.reason, e.target_type, e.target_id])).toEqual([
      ['csv', null, null],
      ['json', null, null],
      ['json+jwe', 'jwe_recipient', kid],
    ]);
    for (const e of events) {
      expect(e.actor_kind).toBe('user');
      expect(e.actor_id).toBe(s.userId);
      expect(JSON.parse(e.fields)).toContain('nationalId');
    }
    // The events are leaves of the tenant's verifiable log.
    const listed = await ctx.app.inject({ url: '/api/v1/audit/events', headers: s.headers });
    expect(JSON.stringify(listed.json())).toContain('contacts.exported');
    // ...and the security report counts them as the user's exports.
    const report = await ctx.app.inject({
      url: '/api/v1/reports/security?format=json',
      headers: s.headers,
    });
    expect(report.statusCode).toBe(200);
    const byUser = report
      .json<{ sensitiveByUser: { userId: string; exports: number }[] }>()
      .sensitiveByUser.find((u) => u.userId === s.userId);
    expect(byUser?.exports).toBe(3);
  });

  it('documents the route in OpenAPI with application/jose', async () => {
    const doc = (await ctx.app.inject({ url: '/api/v1/openapi.json' })).json();
    const post = doc.paths['/api/v1/contacts/export'].post;
    expect(Object.keys(post.responses['200'].content)).toEqual(['application/jose']);
  });
});

describe('custos export contacts --recipient (CLI)', () => {
  const saved = { ...process.env };
  afterEach(() => {
    for (const name of Object.keys(process.env)) {
      if (name.startsWith('CUSTOS_') && !(name in saved)) delete process.env[name];
    }
    Object.assign(process.env, saved);
  });
  const useTestDatabase = () => {
    process.env.CUSTOS_DATA_DIR = ctx.database.dataDir;
    if (ctx.database.url) process.env.CUSTOS_DATABASE_URL = ctx.database.url;
    else delete process.env.CUSTOS_DATABASE_URL;
  };

  it('writes an owner-only JWE file that the recipient opens with node:crypto and jose', async () => {
    const s = await ctx.tenant();
    await create(s, ADA);
    useTestDatabase();
    const dir = ctx.database.dataDir;
    const keyFile = path.join(dir, 'recipient.pem');
    fs.writeFileSync(keyFile, recipient.publicPem);
    const out = path.join(dir, 'contacts.json.jwe');
    const lines: string[] = [];
    const status = await runCli(
      [
        'export',
        'contacts',
        '--tenant',
        s.tenant,
        '--format',
        'json',
        '--recipient',
        keyFile,
        '--out',
        out,
      ],
      (l) => lines.push(l),
    );
    expect(status).toBe(0);
    const kid = await calculateJwkThumbprint(await exportJWK(recipient.publicKey), 'sha256');
    expect(lines).toEqual([`Exported contacts to ${out} encrypted to key ${kid} (JWE)`]);
    expect(fs.statSync(out).mode & 0o777).toBe(0o600);
    const file = fs.readFileSync(out, 'utf8');
    expect(file).not.toContain('marker-7f3c');
    const opened = openWithNodeCrypto(file, recipient.privateKey);
    expect(JSON.parse(opened.plaintext)).toEqual([expect.objectContaining(ADA)]);
    const viaJose = await compactDecrypt(file, recipient.privateKey);
    expect(utf8(viaJose.plaintext)).toBe(opened.plaintext);
    expect((await exportEvents(s.tenantId)).map((e) => e.reason)).toEqual(['json+jwe']);

    // A JWK file works too.
    const jwkFile = path.join(dir, 'recipient.jwk.json');
    const jwk: JsonWebKey = createPublicKey(recipient.publicPem).export({ format: 'jwk' });
    fs.writeFileSync(jwkFile, JSON.stringify(jwk));
    const csvOut = path.join(dir, 'contacts.csv.jwe');
    expect(
      await runCli(
        ['export', 'contacts', '--tenant', s.tenant, '--recipient', jwkFile, '--out', csvOut],
        () => {},
      ),
    ).toBe(0);
    expect(
      openWithNodeCrypto(fs.readFileSync(csvOut, 'utf8'), recipient.privateKey).plaintext,
    ).toContain(ADA.email);
  });

  it('refuses a weak recipient key and writes nothing', async () => {
    const s = await ctx.tenant();
    useTestDatabase();
    const keyFile = path.join(ctx.database.dataDir, 'weak.pem');
    fs.writeFileSync(
      keyFile,
      generateKeyPairSync('rsa', { modulusLength: 1024 })
        .publicKey.export({ type: 'spki', format: 'pem' })
        .toString(),
    );
    const out = path.join(ctx.database.dataDir, 'never.jwe');
    const errors: string[] = [];
    const spy = vi
      .spyOn(process.stderr, 'write')
      .mockImplementation((chunk: string | Uint8Array) => {
        errors.push(String(chunk));
        return true;
      });
    let status: number;
    try {
      status = await runCli(
        ['export', 'contacts', '--tenant', s.tenant, '--recipient', keyFile, '--out', out],
        () => {},
      );
    } finally {
      spy.mockRestore();
    }
    expect(status).toBe(1);
    expect(errors.join('')).toContain('export.recipient_key_too_weak');
    expect(fs.existsSync(out)).toBe(false);
    expect(await exportEvents(s.tenantId)).toEqual([]);
  });
});
