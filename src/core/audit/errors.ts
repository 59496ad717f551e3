/**
 * Stable failure codes of the audit-integrity library. Callers `switch` on `code`; the message is
 * for logs only.
 *
 * - `CANONICAL_UNREPRESENTABLE`: a value JCS (RFC 8785) cannot encode faithfully.
 * - `HASH_INVALID`: a hash that must be 32 bytes (SHA-256) is not.
 * - `TREE_RANGE_INVALID`: a leaf index or tree size outside the tree (e.g. leaf 9 of a 5-leaf tree).
 * - `NODE_UNAVAILABLE`: a hash source could not supply a leaf or subtree hash a proof needs.
 * - `FRONTIER_INVALID`: a serialised compact tree (frontier) is malformed.
 * - `KEY_INVALID`: a key is not an Ed25519 key of the expected kind (private or public).
 * - `CHECKPOINT_MALFORMED`: a checkpoint field has the wrong type or format.
 * - `CHECKPOINT_KEY_UNKNOWN`: no trusted public key has the checkpoint's `keyId`.
 * - `CHECKPOINT_SIGNATURE_INVALID`: the Ed25519 signature does not verify.
 * - `CHECKPOINT_TENANT_MISMATCH`: a checkpoint of another tenant was offered.
 * - `LEAF_MALFORMED`: a stored leaf lacks its bytes or carries a malformed stored hash.
 * - `LEAF_HASH_MISMATCH`: the stored leaf hash differs from the hash of the event (changed event).
 * - `LEAF_INDEX_GAP`: a leaf index is missing (removed event).
 * - `LEAF_INDEX_ORDER`: leaf indexes out of order or repeated (reordered, duplicated or inserted).
 * - `ROOT_MISMATCH`: a recomputed root differs from a signed checkpoint or trusted frontier.
 * - `LOG_TRUNCATED`: the log ends before a checkpoint or the expected size (events removed at the end).
 * - `WITNESS_AHEAD`: an outside witness saw a longer log than the one stored (events removed or
 *   the database rolled back).
 * - `WITNESS_MISMATCH`: a witnessed tree head is not a prefix of the stored log (rewritten).
 * - `WITNESS_MALFORMED`: a witness record cannot be read.
 * - `COLUMNS_DETACHED`: an event column is no longer generated from the canonical bytes (the
 *   table was altered), so what queries read may differ from what was hashed.
 * - `PRUNE_UNANCHORED`: the log claims to be pruned where no signed checkpoint and no recorded
 *   prune event say so (events removed under the cover of retention).
 */
export type AuditIntegrityErrorCode =
  | 'CANONICAL_UNREPRESENTABLE'
  | 'HASH_INVALID'
  | 'TREE_RANGE_INVALID'
  | 'NODE_UNAVAILABLE'
  | 'FRONTIER_INVALID'
  | 'KEY_INVALID'
  | 'CHECKPOINT_MALFORMED'
  | 'CHECKPOINT_KEY_UNKNOWN'
  | 'CHECKPOINT_SIGNATURE_INVALID'
  | 'CHECKPOINT_TENANT_MISMATCH'
  | 'LEAF_MALFORMED'
  | 'LEAF_HASH_MISMATCH'
  | 'LEAF_INDEX_GAP'
  | 'LEAF_INDEX_ORDER'
  | 'ROOT_MISMATCH'
  | 'LOG_TRUNCATED'
  | 'WITNESS_AHEAD'
  | 'WITNESS_MISMATCH'
  | 'WITNESS_MALFORMED'
  | 'PRUNE_UNANCHORED'
  | 'COLUMNS_DETACHED';

/** Where in a log a verification failure was found (only set by log verification). */
export interface AuditIntegrityErrorOptions {
  /**
   * The first leaf index at fault. For checkpoint failures (`ROOT_MISMATCH`,
   * `CHECKPOINT_SIGNATURE_INVALID`, ...) it is the first leaf that no earlier verified
   * checkpoint anchored: the fault lies in `[leafIndex, checkpointTreeSize)`.
   */
  leafIndex?: number;
  /** The tree size of the checkpoint involved, if any. */
  checkpointTreeSize?: number;
  cause?: unknown;
}

/**
 * The one error class of `core/audit`.
 *
 * @example
 * ```ts
 * try {
 *   await verifyLog({ tenantId, leaves, checkpoints, publicKeys });
 * } catch (error) {
 *   if (error instanceof AuditIntegrityError && error.code === 'LEAF_HASH_MISMATCH') {
 *     console.error(`event ${error.leafIndex} was changed`);
 *   }
 * }
 * ```
 */
export class AuditIntegrityError extends Error {
  override readonly name = 'AuditIntegrityError';
  readonly leafIndex: number | undefined;
  readonly checkpointTreeSize: number | undefined;

  constructor(
    readonly code: AuditIntegrityErrorCode,
    message: string,
    options: AuditIntegrityErrorOptions = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.leafIndex = options.leafIndex;
    this.checkpointTreeSize = options.checkpointTreeSize;
  }
}
