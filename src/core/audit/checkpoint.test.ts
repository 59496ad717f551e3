import { describe, expect, it } from 'vitest';
import { generateKeyPairSync } from 'node:crypto';
import { toHex } from './bytes.ts';
import { checkpointSigningBytes, signCheckpoint, verifyCheckpoint } from './checkpoint.ts';
import {
  checkpointKeyring,
  exportPrivateKeyPem,
  exportPublicKeyPem,
  exportPublicKeySpki,
  generateCheckpointKeyPair,
  importPrivateKey,
  importPublicKey,
  keyIdFor,
} from './keys.ts';
import { leafHash } from './merkle.ts';

const clock = { now: () => new Date('2026-01-15T09:00:00.000Z') };
const { privateKey, publicKey } = generateCheckpointKeyPair();
const root = leafHash(new TextEncoder().encode('root'));
const head = { tenantId: 'tenant-a', treeSize: 42, root };
const code = (c: string) => expect.objectContaining({ code: c });

describe('checkpoints', () => {
  it('signs a tree head that verifies with the public key', () => {
    const cp = signCheckpoint(head, privateKey, clock);
    expect(cp).toMatchObject({
      tenantId: 'tenant-a',
      treeSize: 42,
      rootHash: toHex(root),
      timestamp: '2026-01-15T09:00:00.000Z',
      keyId: keyIdFor(publicKey),
    });
    expect(cp.signature).toMatch(/^[0-9a-f]{128}$/);
    const verified = verifyCheckpoint(cp, publicKey, { tenantId: 'tenant-a' });
    expect(toHex(verified.root)).toBe(toHex(root));
    expect(verified.treeSize).toBe(42);
  });

  it('signs canonical JSON that names its purpose', () => {
    const cp = signCheckpoint(head, privateKey, clock);
    expect(new TextDecoder().decode(checkpointSigningBytes(cp))).toBe(
      `{"context":"custos.audit.checkpoint.v1","keyId":"${cp.keyId}","rootHash":"${cp.rootHash}",` +
        `"tenantId":"tenant-a","timestamp":"2026-01-15T09:00:00.000Z","treeSize":42}`,
    );
  });

  it.each([
    ['tenantId', 'tenant-b'],
    ['treeSize', 43],
    ['rootHash', toHex(leafHash(new Uint8Array([1])))],
    ['timestamp', '2026-01-15T09:00:00.001Z'],
  ])('rejects a checkpoint whose %s was changed', (field, value) => {
    const cp = { ...signCheckpoint(head, privateKey, clock), [field]: value };
    expect(() => verifyCheckpoint(cp, publicKey)).toThrow(code('CHECKPOINT_SIGNATURE_INVALID'));
  });

  it('rejects a flipped signature bit', () => {
    const cp = signCheckpoint(head, privateKey, clock);
    const sig = Buffer.from(cp.signature, 'hex');
    sig[10]! ^= 1;
    expect(() => verifyCheckpoint({ ...cp, signature: sig.toString('hex') }, publicKey)).toThrow(
      code('CHECKPOINT_SIGNATURE_INVALID'),
    );
  });

  it('rejects a checkpoint signed by another key, even one claiming the trusted key id', () => {
    const other = generateCheckpointKeyPair();
    const forged = signCheckpoint(head, other.privateKey, clock);
    expect(() => verifyCheckpoint(forged, publicKey)).toThrow(code('CHECKPOINT_KEY_UNKNOWN'));
    const relabelled = { ...forged, keyId: keyIdFor(publicKey) };
    expect(() => verifyCheckpoint(relabelled, publicKey)).toThrow(
      code('CHECKPOINT_SIGNATURE_INVALID'),
    );
  });

  it("rejects another tenant's checkpoint when the tenant is expected", () => {
    const cp = signCheckpoint({ ...head, tenantId: 'tenant-b' }, privateKey, clock);
    expect(() => verifyCheckpoint(cp, [publicKey], { tenantId: 'tenant-a' })).toThrow(
      code('CHECKPOINT_TENANT_MISMATCH'),
    );
  });

  it('picks the signing key out of a keyring of current and retired keys', () => {
    const retired = generateCheckpointKeyPair();
    const keyring = checkpointKeyring([retired.publicKey, publicKey]);
    const cp = signCheckpoint(head, privateKey, clock);
    expect(verifyCheckpoint(cp, keyring).keyId).toBe(keyIdFor(publicKey));
    expect(verifyCheckpoint(cp, [retired.publicKey, publicKey]).treeSize).toBe(42);
  });

  it.each([
    ['not an object', 'nope'],
    ['an extra field', { extra: 1 }],
    ['a negative tree size', { treeSize: -1 }],
    ['an upper-case root', { rootHash: 'AB'.repeat(32) }],
    ['a non-UTC timestamp', { timestamp: '2026-01-15T10:00:00.000+01:00' }],
    ['an impossible date', { timestamp: '2026-02-30T09:00:00.000Z' }],
    ['a short signature', { signature: 'ab' }],
  ])('rejects a checkpoint with %s as malformed', (_, change) => {
    const cp = signCheckpoint(head, privateKey, clock);
    const input = typeof change === 'string' ? change : { ...cp, ...change };
    expect(() => verifyCheckpoint(input, publicKey)).toThrow(code('CHECKPOINT_MALFORMED'));
  });

  it('exports and imports keys as PEM and SPKI, keeping the key id', () => {
    const pem = exportPublicKeyPem(publicKey);
    expect(pem).toMatch(/^-----BEGIN PUBLIC KEY-----/);
    expect(keyIdFor(importPublicKey(pem))).toBe(keyIdFor(publicKey));
    const der = exportPublicKeySpki(publicKey);
    expect(der.byteLength).toBe(44);
    expect(keyIdFor(importPublicKey(der))).toBe(keyIdFor(publicKey));
    const cp = signCheckpoint(head, importPrivateKey(exportPrivateKeyPem(privateKey)), clock);
    expect(() => verifyCheckpoint(cp, importPublicKey(pem))).not.toThrow();
  });

  it('refuses keys that are not Ed25519 keys of the right kind', () => {
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
    expect(() => signCheckpoint(head, rsa.privateKey, clock)).toThrow(code('KEY_INVALID'));
    expect(() => signCheckpoint(head, publicKey, clock)).toThrow(code('KEY_INVALID'));
    expect(() => keyIdFor(privateKey)).toThrow(code('KEY_INVALID'));
    const rsaPem = rsa.publicKey.export({ type: 'spki', format: 'pem' }).toString();
    expect(() => importPublicKey(rsaPem)).toThrow(code('KEY_INVALID'));
    expect(() => importPublicKey('not a key')).toThrow(code('KEY_INVALID'));
  });
});
