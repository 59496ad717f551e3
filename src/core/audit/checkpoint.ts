import { Buffer } from 'node:buffer';
import { createPublicKey, type KeyObject, sign, verify } from 'node:crypto';
import { assertHash, hashFromHex, isIndex, toHex } from './bytes.ts';
import { canonicalBytes } from './canonical.ts';
import { AuditIntegrityError } from './errors.ts';
import { assertKey, keyIdFor } from './keys.ts';

/**
 * Domain separation: this string is part of every signed message (not of the stored body), so a
 * checkpoint signature can never be replayed as a signature over anything else.
 */
export const CHECKPOINT_CONTEXT = 'custos.audit.checkpoint.v1';

/** The signed fields of a checkpoint (signed tree head). */
export interface CheckpointBody {
  readonly tenantId: string;
  readonly treeSize: number;
  /** Lower-case hex of the 32-byte RFC 6962 root. */
  readonly rootHash: string;
  /** ISO 8601 UTC with milliseconds, from the injected clock, e.g. `2026-01-15T09:00:00.000Z`. */
  readonly timestamp: string;
  /** `keyIdFor(publicKey)` of the signing key. */
  readonly keyId: string;
}

/** A checkpoint as stored and published: the body plus a hex Ed25519 signature (64 bytes). */
export interface SignedCheckpoint extends CheckpointBody {
  readonly signature: string;
}

/** A checkpoint whose signature verified, with its root as bytes. */
export interface VerifiedCheckpoint extends CheckpointBody {
  readonly root: Uint8Array;
}

/** The slice of a clock this library needs. */
export interface AuditClock {
  now(): Date;
}

const HEX64 = /^[0-9a-f]{64}$/;
const HEX128 = /^[0-9a-f]{128}$/;
const ISO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const FIELDS = ['keyId', 'rootHash', 'signature', 'tenantId', 'timestamp', 'treeSize'];

/**
 * The exact bytes an Ed25519 checkpoint signature covers: RFC 8785 canonical JSON of the body
 * plus `context: CHECKPOINT_CONTEXT`.
 *
 * @example
 * ```ts
 * const message = checkpointSigningBytes(body);
 * ```
 */
export function checkpointSigningBytes(body: CheckpointBody): Uint8Array {
  const { tenantId, treeSize, rootHash, timestamp, keyId } = body;
  return canonicalBytes({
    context: CHECKPOINT_CONTEXT,
    tenantId,
    treeSize,
    rootHash,
    timestamp,
    keyId,
  });
}

/**
 * Signs the tree head of a tenant's log: `treeSize` leaves with RFC 6962 root `root`, stamped
 * with the injected clock.
 *
 * @example
 * ```ts
 * const checkpoint = signCheckpoint(
 *   { tenantId, treeSize: tree.size, root: tree.root() },
 *   privateKey,
 *   clock,
 * );
 * ```
 */
export function signCheckpoint(
  head: { tenantId: string; treeSize: number; root: Uint8Array },
  privateKey: KeyObject,
  clock: AuditClock,
): SignedCheckpoint {
  assertKey(privateKey, 'private');
  assertHash(head.root, 'root');
  if (typeof head.tenantId !== 'string' || head.tenantId === '' || !isIndex(head.treeSize)) {
    throw new TypeError('checkpoint needs a tenantId and an integer treeSize');
  }
  const body: CheckpointBody = {
    tenantId: head.tenantId,
    treeSize: head.treeSize,
    rootHash: toHex(head.root),
    timestamp: clock.now().toISOString(),
    keyId: keyIdFor(createPublicKey(privateKey)),
  };
  const signature = sign(null, checkpointSigningBytes(body), privateKey).toString('hex');
  return { ...body, signature };
}

function malformed(why: string): never {
  throw new AuditIntegrityError('CHECKPOINT_MALFORMED', `checkpoint ${why}`);
}

/**
 * Checks the shape of untrusted checkpoint input (exact fields, lower-case hex, ISO UTC
 * timestamp) without verifying the signature; throws `CHECKPOINT_MALFORMED`.
 *
 * @example
 * ```ts
 * const cp = parseCheckpoint(JSON.parse(body)); // then verifyCheckpoint(cp, keys)
 * ```
 */
export function parseCheckpoint(input: unknown): SignedCheckpoint {
  if (typeof input !== 'object' || input === null || Array.isArray(input))
    malformed('not an object');
  const c = input as Record<string, unknown>;
  const keys = Object.keys(c).sort();
  if (keys.length !== FIELDS.length || keys.some((k, i) => k !== FIELDS[i])) {
    malformed(`fields must be exactly ${FIELDS.join(', ')}`);
  }
  const { tenantId, treeSize, rootHash, timestamp, keyId, signature } = c;
  if (typeof tenantId !== 'string' || tenantId === '') malformed('tenantId');
  if (!isIndex(treeSize)) malformed('treeSize');
  if (typeof rootHash !== 'string' || !HEX64.test(rootHash)) malformed('rootHash');
  if (typeof keyId !== 'string' || !HEX64.test(keyId)) malformed('keyId');
  if (typeof signature !== 'string' || !HEX128.test(signature)) malformed('signature');
  if (
    typeof timestamp !== 'string' ||
    !ISO_UTC.test(timestamp) ||
    Number.isNaN(Date.parse(timestamp)) ||
    new Date(timestamp).toISOString() !== timestamp
  ) {
    malformed('timestamp');
  }
  return { tenantId, treeSize, rootHash, timestamp, keyId, signature };
}

/**
 * Verifies a checkpoint against trusted public keys (selected by `keyId`) and, if given, the
 * expected tenant. Throws `CHECKPOINT_MALFORMED`, `CHECKPOINT_KEY_UNKNOWN`,
 * `CHECKPOINT_TENANT_MISMATCH` or `CHECKPOINT_SIGNATURE_INVALID`; returns the verified body.
 *
 * @example
 * ```ts
 * const head = verifyCheckpoint(JSON.parse(text), [publicKey], { tenantId });
 * verifyInclusion(i, head.treeSize, leaf, proof, head.root);
 * ```
 */
export function verifyCheckpoint(
  checkpoint: unknown,
  publicKeys: KeyObject | readonly KeyObject[] | ReadonlyMap<string, KeyObject>,
  options: { tenantId?: string } = {},
): VerifiedCheckpoint {
  const c = parseCheckpoint(checkpoint);
  const key = findKey(publicKeys, c.keyId);
  if (key === undefined) {
    throw new AuditIntegrityError('CHECKPOINT_KEY_UNKNOWN', 'no trusted key has this key id', {
      checkpointTreeSize: c.treeSize,
    });
  }
  assertKey(key, 'public');
  if (options.tenantId !== undefined && c.tenantId !== options.tenantId) {
    throw new AuditIntegrityError('CHECKPOINT_TENANT_MISMATCH', 'checkpoint of another tenant', {
      checkpointTreeSize: c.treeSize,
    });
  }
  const ok = verify(null, checkpointSigningBytes(c), key, Buffer.from(c.signature, 'hex'));
  if (!ok) {
    throw new AuditIntegrityError('CHECKPOINT_SIGNATURE_INVALID', 'checkpoint signature invalid', {
      checkpointTreeSize: c.treeSize,
    });
  }
  const { tenantId, treeSize, rootHash, timestamp, keyId } = c;
  return { tenantId, treeSize, rootHash, timestamp, keyId, root: hashFromHex(rootHash) };
}

function findKey(
  keys: KeyObject | readonly KeyObject[] | ReadonlyMap<string, KeyObject>,
  keyId: string,
): KeyObject | undefined {
  if (keys instanceof Map) return (keys as ReadonlyMap<string, KeyObject>).get(keyId);
  const list = Array.isArray(keys) ? (keys as readonly KeyObject[]) : [keys as KeyObject];
  return list.find((k) => keyIdFor(k) === keyId);
}
