/**
 * Audit-log integrity for Custos: canonical event bytes (RFC 8785), an RFC 6962 / RFC 9162
 * Merkle tree with compact frontier, inclusion and consistency proofs, Ed25519-signed
 * checkpoints and a streaming log verifier. Pure: keys, clock and storage come in as arguments.
 *
 * @example
 * ```ts
 * import { canonicalBytes, CompactTree, leafHash, signCheckpoint } from './core/audit/index.ts';
 *
 * const tree = CompactTree.fromState(savedFrontier);
 * const bytes = canonicalBytes(event);
 * tree.append(leafHash(bytes)); // store bytes, leaf hash and tree.toState() in one transaction
 * const head = signCheckpoint({ tenantId, treeSize: tree.size, root: tree.root() }, key, clock);
 * ```
 */
export { AuditIntegrityError } from './errors.ts';
export type { AuditIntegrityErrorCode, AuditIntegrityErrorOptions } from './errors.ts';
export { bytesEqual, bytesEqualHex, HASH_SIZE, hashFromHex, isHashHex, toHex } from './bytes.ts';
export { canonicalBytes } from './canonical.ts';
export {
  emptyRoot,
  foldRight,
  leafHash,
  leafHashHexOfText,
  leafHashOfText,
  nodeHash,
  perfectLevels,
  rootFromLeafHashes,
  splitPoint,
} from './merkle.ts';
export { CompactTree } from './compact-tree.ts';
export type { FrontierState, SubtreeListener } from './compact-tree.ts';
export {
  consistencyProof,
  consistencyProofPlan,
  inclusionProof,
  inclusionProofPlan,
  perfectSubtreeHash,
  proofFromPlan,
  rangeNodes,
  rootAt,
} from './proof.ts';
export type { MerkleHashSource, NodeId, ProofPlan } from './proof.ts';
export { MemoryMerkleStore } from './memory-store.ts';
export { verifyConsistency, verifyInclusion } from './verify-proof.ts';
export {
  CHECKPOINT_CONTEXT,
  checkpointSigningBytes,
  parseCheckpoint,
  signCheckpoint,
  verifyCheckpoint,
} from './checkpoint.ts';
export {
  checkpointKeyring,
  exportPrivateKeyPem,
  exportPublicKeyPem,
  exportPublicKeySpki,
  generateCheckpointKeyPair,
  importPrivateKey,
  importPublicKey,
  keyIdFor,
} from './keys.ts';
export type {
  AuditClock,
  CheckpointBody,
  SignedCheckpoint,
  VerifiedCheckpoint,
} from './checkpoint.ts';
export { verifyLog } from './verify-log.ts';
export type { LogVerificationSummary, VerifyLogInput } from './verify-log.ts';
export type { LeafOrPage, LeafSource, StoredAuditLeaf } from './leaf-reader.ts';
