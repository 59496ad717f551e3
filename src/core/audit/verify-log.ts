import { Buffer } from 'node:buffer';
import type { KeyObject } from 'node:crypto';
import { bytesEqual, bytesEqualHex, HASH_SIZE, isHashHex, isIndex, toHex } from './bytes.ts';
import { canonicalBytes } from './canonical.ts';
import { parseCheckpoint, type SignedCheckpoint, verifyCheckpoint } from './checkpoint.ts';
import { checkpointKeyring } from './keys.ts';
import { CompactTree, type FrontierState, type SubtreeListener } from './compact-tree.ts';
import { AuditIntegrityError, type AuditIntegrityErrorCode } from './errors.ts';
import { END, LeafReader, type LeafSource, type StoredAuditLeaf } from './leaf-reader.ts';
import { leafHash, leafHashHexOfText, leafHashOfText } from './merkle.ts';

export interface VerifyLogInput {
  readonly tenantId: string;
  /**
   * Events in leaf order, one by one or in pages (arrays), e.g. a database cursor. Pages cost one
   * await per page instead of one per event. The source is closed early on the first failure.
   */
  readonly leaves: LeafSource;
  /** Signed checkpoints of this tenant, in any order (untrusted input, all of them checked). */
  readonly checkpoints?: readonly unknown[];
  /** Trusted checkpoint keys, current and retired. */
  readonly publicKeys: readonly KeyObject[] | ReadonlyMap<string, KeyObject>;
  /**
   * Trusted frontier where a pruned log resumes (default: the empty tree). Its size is the first
   * leaf index expected; a checkpoint of exactly that size is checked against its root.
   */
  readonly start?: CompactTree | FrontierState;
  /** The log length recorded elsewhere (e.g. a sequence row): a shorter log is truncated. */
  readonly expectedTreeSize?: number;
  /**
   * Told of every perfect subtree (level >= 1) the verified leaves complete, as the tree is
   * rebuilt: lets a caller check a stored node table against verified hashes without hashing
   * the tree a second time. Called only after the leaves below it passed every check.
   */
  readonly onSubtree?: SubtreeListener;
}

export interface LogVerificationSummary {
  /** First leaf index verified (the size of `start`). */
  readonly startIndex: number;
  readonly treeSize: number;
  readonly root: Uint8Array;
  /** Frontier at `treeSize`: store it to resume or to prune the verified prefix. */
  readonly frontier: FrontierState;
  readonly leavesVerified: number;
  /** Checkpoints whose signature and root both matched. */
  readonly checkpointsVerified: number;
  /** Checkpoints older than `start`: signature verified, root no longer recomputable. */
  readonly checkpointsBeforeStart: number;
  /** Leaves from here on are not yet covered by any signed checkpoint. */
  readonly anchoredTreeSize: number;
}

function fail(
  code: AuditIntegrityErrorCode,
  message: string,
  leafIndex: number,
  checkpointTreeSize?: number,
  cause?: unknown,
): never {
  throw new AuditIntegrityError(code, message, { leafIndex, checkpointTreeSize, cause });
}

/**
 * Recomputes a tenant's audit log from its stored events and checks every signed checkpoint
 * against it, streaming (O(log n) memory). Throws `AuditIntegrityError` at the FIRST problem in
 * log order, with `leafIndex` set:
 *
 * - `LEAF_HASH_MISMATCH`: the event's bytes no longer hash to its stored leaf hash (changed).
 * - `LEAF_INDEX_GAP`: index `leafIndex` is missing (removed event).
 * - `LEAF_INDEX_ORDER`: `leafIndex` arrives out of order or twice (reordered pair, duplicate or
 *   inserted event), or lies past `expectedTreeSize`.
 * - `LEAF_MALFORMED`: a row without bytes or with a malformed stored hash.
 * - `ROOT_MISMATCH`: a signed checkpoint (or the trusted `start`) disagrees with the recomputed
 *   root although every leaf matched its stored hash: an event and its stored hash were both
 *   rewritten, or events were inserted and renumbered. The fault lies in
 *   `[leafIndex, checkpointTreeSize)`, `leafIndex` being the end of the last good checkpoint.
 * - `CHECKPOINT_SIGNATURE_INVALID`, `CHECKPOINT_KEY_UNKNOWN`, `CHECKPOINT_TENANT_MISMATCH`,
 *   `CHECKPOINT_MALFORMED`: a checkpoint cannot be trusted (same `leafIndex` meaning).
 * - `LOG_TRUNCATED`: the log ends at `leafIndex` before a checkpoint or `expectedTreeSize`.
 *
 * Events after the last checkpoint are only as safe as their stored hashes: the summary's
 * `anchoredTreeSize` says where signed coverage ends.
 *
 * @example
 * ```ts
 * const summary = await verifyLog({
 *   tenantId,
 *   leaves: repository.streamAuditLeaves(tenantId), // async iterable, leaf order
 *   checkpoints: await repository.checkpoints(tenantId),
 *   publicKeys: [auditPublicKey],
 * });
 * console.log(`${summary.treeSize} events verified, root ${toHex(summary.root)}`);
 * ```
 */
export async function verifyLog(input: VerifyLogInput): Promise<LogVerificationSummary> {
  const { tenantId } = input;
  const keyring =
    input.publicKeys instanceof Map
      ? (input.publicKeys as ReadonlyMap<string, KeyObject>)
      : checkpointKeyring(input.publicKeys as readonly KeyObject[]);
  const tree =
    input.start === undefined
      ? new CompactTree()
      : input.start instanceof CompactTree
        ? input.start.clone()
        : CompactTree.fromState(input.start);
  const startIndex = tree.size;
  // End of the signed coverage so far: failures point at the first leaf not yet anchored.
  let anchored = 0;
  let checkpointsVerified = 0;
  let checkpointsBeforeStart = 0;

  const checkpoints = sortCheckpoints(input.checkpoints ?? [], startIndex);
  let next = 0;

  const trust = (cp: SignedCheckpoint) => {
    try {
      return verifyCheckpoint(cp, keyring, { tenantId });
    } catch (error) {
      if (!(error instanceof AuditIntegrityError)) throw error;
      return fail(error.code, error.message, anchored, cp.treeSize, error);
    }
  };
  const checkReached = () => {
    let reached = false;
    for (let cp = checkpoints[next]; cp?.treeSize === tree.size; cp = checkpoints[++next]) {
      const head = trust(cp);
      if (!bytesEqual(head.root, tree.root())) {
        const what = tree.size === startIndex ? 'the trusted start frontier' : 'the events';
        fail('ROOT_MISMATCH', `checkpoint root differs from ${what}`, anchored, cp.treeSize);
      }
      checkpointsVerified++;
      reached = true;
    }
    // Only after all checkpoints of this size: two of one size with different roots both point
    // back at the same unanchored range.
    if (reached) anchored = tree.size;
  };

  // Checkpoints older than a pruned start: only their signatures can still be checked.
  for (
    let cp = checkpoints[next];
    cp !== undefined && cp.treeSize < startIndex;
    cp = checkpoints[++next]
  ) {
    trust(cp);
    anchored = cp.treeSize;
    checkpointsBeforeStart++;
  }
  checkReached(); // a checkpoint at exactly the start must match the trusted frontier
  anchored = Math.max(anchored, startIndex);

  const reader = new LeafReader(input.leaves);
  let finished = false;
  try {
    let pulled = reader.next();
    let leaf = pulled instanceof Promise ? await pulled : pulled;
    while (leaf !== END) {
      const expected = tree.size;
      if (!isIndex(leaf?.leafIndex)) {
        fail('LEAF_MALFORMED', 'leaf index is not an integer', expected);
      }
      if (leaf.leafIndex < expected) {
        fail('LEAF_INDEX_ORDER', `leaf ${leaf.leafIndex} seen again or late`, leaf.leafIndex);
      }
      pulled = reader.next();
      const following = pulled instanceof Promise ? await pulled : pulled;
      if (leaf.leafIndex > expected) {
        // A missing index followed directly by it means a swapped pair, not a removal.
        if (following !== END && following?.leafIndex === expected) {
          fail('LEAF_INDEX_ORDER', `leaf ${expected} arrives after ${leaf.leafIndex}`, expected);
        }
        fail('LEAF_INDEX_GAP', `leaf ${expected} is missing`, expected);
      }
      if (input.expectedTreeSize !== undefined && expected >= input.expectedTreeSize) {
        fail('LEAF_INDEX_ORDER', `leaf ${expected} lies past the expected end`, expected);
      }
      tree.append(checkLeaf(leaf), input.onSubtree);
      checkReached();
      leaf = following;
    }
    finished = true;
  } finally {
    if (!finished) await reader.close();
  }

  const end = tree.size;
  for (let cp = checkpoints[next]; cp !== undefined; cp = checkpoints[++next]) {
    trust(cp); // a forged checkpoint is a forgery, not evidence of truncation
    fail('LOG_TRUNCATED', `log ends at ${end}, checkpoint covers ${cp.treeSize}`, end, cp.treeSize);
  }
  if (input.expectedTreeSize !== undefined && end < input.expectedTreeSize) {
    fail('LOG_TRUNCATED', `log ends at ${end}, expected ${input.expectedTreeSize}`, end);
  }
  return {
    startIndex,
    treeSize: end,
    root: tree.root(),
    frontier: tree.toState(),
    leavesVerified: end - startIndex,
    checkpointsVerified,
    checkpointsBeforeStart,
    anchoredTreeSize: anchored,
  };
}

function sortCheckpoints(input: readonly unknown[], startIndex: number): SignedCheckpoint[] {
  const parsed = input.map((raw) => {
    try {
      return parseCheckpoint(raw);
    } catch (error) {
      return fail(
        'CHECKPOINT_MALFORMED',
        'a checkpoint is malformed',
        startIndex,
        undefined,
        error,
      );
    }
  });
  return parsed.sort((a, b) => a.treeSize - b.treeSize);
}

const encoder = new TextEncoder();

function checkLeaf(leaf: StoredAuditLeaf): Uint8Array {
  const { leafIndex, storedLeafHash } = leaf;
  if (
    typeof leaf.canonicalBytes === 'string' &&
    typeof storedLeafHash === 'string' &&
    leaf.event === undefined
  ) {
    // The usual row (stored text, hex hash, nothing to cross-check): one hash, compared as hex.
    // Equal to a digest, the stored hex is well-formed; otherwise the checks below say why not.
    const hex = leafHashHexOfText(leaf.canonicalBytes);
    if (hex === storedLeafHash) return Buffer.from(hex, 'hex');
  }
  if (typeof storedLeafHash === 'string') {
    if (!isHashHex(storedLeafHash)) {
      fail('LEAF_MALFORMED', 'stored leaf hash is not 64 lower-case hex digits', leafIndex);
    }
  } else if (!(storedLeafHash instanceof Uint8Array) || storedLeafHash.byteLength !== HASH_SIZE) {
    fail('LEAF_MALFORMED', 'stored leaf hash is not 32 bytes', leafIndex);
  }
  let bytes = leaf.canonicalBytes;
  if (bytes === undefined) {
    if (leaf.event === undefined)
      fail('LEAF_MALFORMED', 'leaf has no bytes and no event', leafIndex);
    bytes = canonicalOrFail(leaf.event, leafIndex);
  } else if (typeof bytes !== 'string' && !(bytes instanceof Uint8Array)) {
    fail('LEAF_MALFORMED', 'canonical bytes are not bytes', leafIndex);
  } else if (leaf.event !== undefined) {
    const stored = typeof bytes === 'string' ? encoder.encode(bytes) : bytes;
    if (!bytesEqual(stored, canonicalOrFail(leaf.event, leafIndex))) {
      fail('LEAF_HASH_MISMATCH', 'stored event differs from its stored canonical bytes', leafIndex);
    }
  }
  const hash = typeof bytes === 'string' ? leafHashOfText(bytes) : leafHash(bytes);
  const matches =
    typeof storedLeafHash === 'string'
      ? bytesEqualHex(hash, storedLeafHash)
      : bytesEqual(hash, storedLeafHash);
  if (!matches) {
    fail('LEAF_HASH_MISMATCH', `leaf ${leafIndex} hashes to ${toHex(hash)}`, leafIndex);
  }
  return hash;
}

function canonicalOrFail(event: unknown, leafIndex: number): Uint8Array {
  try {
    return canonicalBytes(event);
  } catch (error) {
    return fail(
      'LEAF_HASH_MISMATCH',
      'stored event cannot be canonicalised',
      leafIndex,
      undefined,
      error,
    );
  }
}
