import type { Kysely, Transaction } from 'kysely';
import type { Clock } from '../../clock.ts';
import type { Dialect, SyncWriter } from '../../db/database.ts';
import type { Database } from '../../db/schema.ts';
import {
  CompactTree,
  canonicalBytes,
  hashFromHex,
  leafHashHexOfText,
  nodeHash,
  signCheckpoint,
  toHex,
  type FrontierState,
  type LogVerificationSummary,
  type SignedCheckpoint,
} from '../../core/audit/index.ts';
import { newId } from '../../ids.ts';
import { eventBody, type AuditEventInput } from './event.ts';
import {
  appendStatements,
  insertCheckpoint,
  checkpointAt,
  lockTree,
  registerPublicKey,
  saveTree,
  type Db,
  type HeadRow,
} from './repository.ts';
import { canonicalText } from './canonical-text.ts';
import { verifyTenantLog } from './verify.ts';
import { loadOrCreateSigningKey, type SigningKey } from './signing-key.ts';
import type { Witness } from './witness.ts';

const decoder = new TextDecoder();

/** A tenant's frontier as read from (or written to) its head row, parsed. */
interface Frontier {
  /** The stored JSON it was parsed from / written as. */
  text: string;
  size: number;
  /** Right-edge perfect subtree hashes, largest first, and their hex forms. */
  hashes: readonly Uint8Array[];
  hexes: readonly string[];
}

// Parsed frontiers kept per tenant, used only when the stored text is the same string.
const FRONTIER_CACHE_SIZE = 10_000;

export interface AuditDeps {
  db: Kysely<Database>;
  dialect: Dialect;
  clock: Clock;
  /** Where the checkpoint signing key file lives (`CUSTOS_DATA_DIR`). */
  dataDir: string;
  /** Sign a checkpoint at least every this many events (default 1000). */
  checkpointEvery?: number;
  /** ... or when this long has passed since the last one and events arrived (default 60 s). */
  checkpointIntervalMs?: number;
  /** Outside witness given every committed checkpoint (`publishToWitness`). */
  witness?: Witness;
  /**
   * SQLite: the connection's synchronous statements (`DatabaseHandle.writer`), so an append
   * runs its statements without Kysely's per-query machinery. Optional: without it they go
   * through Kysely.
   */
  writer?: SyncWriter | undefined;
}

export interface AppendedEvent {
  leafIndex: number;
  leafHash: string;
  id: string;
}

/** The slice of the audit service other modules use to record events. */
export interface AuditRecorder {
  append(trx: Transaction<Database>, event: AuditEventInput): Promise<AppendedEvent>;
  /**
   * Appends events that record no change (a read) in a transaction of their own: all or none,
   * committed when the promise resolves. Cheaper than a Kysely transaction around `append` on
   * SQLite. Optional so that test doubles need not implement it.
   */
  appendAlone?(events: readonly AuditEventInput[]): Promise<AppendedEvent[]>;
}

/**
 * Records events that go with no change (reads, refusals) in a transaction of their own, all or
 * none: through `appendAlone` when the recorder has it, else in a Kysely transaction.
 */
export async function appendAlone(
  db: Kysely<Database>,
  recorder: AuditRecorder,
  events: readonly AuditEventInput[],
): Promise<void> {
  if (events.length === 0) return;
  if (recorder.appendAlone) {
    await recorder.appendAlone(events);
    return;
  }
  await db.transaction().execute(async (trx) => {
    for (const event of events) await recorder.append(trx, event);
  });
}

/**
 * Appends events to the tenant's Merkle tree inside the caller's transaction (if the append
 * fails, the change it records fails) and signs checkpoints.
 */
export function createAuditService(deps: AuditDeps) {
  const { db, dialect, clock } = deps;
  const every = deps.checkpointEvery ?? 1000;
  const intervalMs = deps.checkpointIntervalMs ?? 60_000;
  let key: SigningKey | undefined;
  const signingKey = () => (key ??= loadOrCreateSigningKey(deps.dataDir));

  /**
   * Signs the tree head and stores the checkpoint (and the public key) in `trx`; returns the
   * stored checkpoint when this key already signed this size.
   */
  async function sign(
    trx: Db,
    tenantId: string,
    head: { treeSize: number; root: Uint8Array },
  ): Promise<SignedCheckpoint> {
    const k = signingKey();
    const stored = await checkpointAt(trx, tenantId, head.treeSize, k.keyId);
    if (stored) return stored;
    const cp = signCheckpoint({ tenantId, ...head }, k.privateKey, clock);
    await registerPublicKey(trx, k, cp.timestamp);
    await insertCheckpoint(trx, cp);
    return cp;
  }

  const statements = appendStatements(dialect, deps.writer);
  const frontiers = new Map<string, Frontier>();

  /** The head's frontier: the one this process wrote last when the stored text is the same. */
  function frontierOf(tenantId: string, head: HeadRow): Frontier {
    const size = Number(head.tree_size);
    const known = frontiers.get(tenantId);
    if (known !== undefined && known.text === head.frontier && known.size === size) return known;
    const tree = CompactTree.fromState(JSON.parse(head.frontier) as FrontierState);
    if (tree.size !== size) throw new TypeError('audit_tree frontier and tree_size disagree');
    const hashes = tree.hashes;
    return { text: head.frontier, size, hashes, hexes: hashes.map(toHex) };
  }

  /** Remembers the frontier written; never mutated afterwards (a rollback leaves it unused). */
  function remember(tenantId: string, frontier: Frontier) {
    if (frontiers.size >= FRONTIER_CACHE_SIZE && !frontiers.has(tenantId)) frontiers.clear();
    frontiers.set(tenantId, frontier);
  }

  /**
   * Appends one event as the next leaf of its tenant's tree in `trx` (a transaction, or on
   * SQLite a connection in one), locking the tenant's head row until that transaction ends.
   */
  async function appendIn(trx: Db, input: AuditEventInput): Promise<AppendedEvent> {
    const { tenantId } = input;
    const head = await statements.lockHead(trx, tenantId);
    const frontier = frontierOf(tenantId, head);
    const leafIndex = frontier.size;
    const now = clock.now();
    const id = newId();
    const body = eventBody(input, { leafIndex, id, occurredAt: now.toISOString() });
    // Written directly for the known shape of an event (the general canonicaliser was about a
    // tenth of an append), the general way for what that leaves aside (a surrogate, refused).
    // The database derives every other column of the row from this text.
    const canonical = canonicalText(body) ?? decoder.decode(canonicalBytes(body));
    const leafHex = leafHashHexOfText(canonical);
    const leaf = hashFromHex(leafHex);

    // Every perfect subtree this leaf completes: one per trailing 1 bit of the old size.
    const hashes = frontier.hashes.slice();
    const hexes = frontier.hexes.slice();
    const nodes: { level: number; index: number; hash: string }[] = [];
    let hash = leaf;
    let hex = leafHex;
    let index = leafIndex;
    let level = 0;
    while (index % 2 === 1) {
      hash = nodeHash(hashes.pop()!, hash);
      hexes.pop();
      index = (index - 1) / 2;
      level++;
      hex = toHex(hash);
      nodes.push({ level, index, hash: hex });
    }
    hashes.push(hash);
    hexes.push(hex);
    const size = leafIndex + 1;
    const state: FrontierState = { treeSize: size, hashes: hexes };
    const next: Frontier = { text: JSON.stringify(state), size, hashes, hexes };

    const due =
      size - Number(head.checkpoint_size) >= every ||
      head.checkpoint_at === null ||
      now.getTime() - Date.parse(head.checkpoint_at) >= intervalMs;
    let checkpoint: { size: number; at: string } | undefined;
    if (due) {
      const root = CompactTree.fromHashes(size, hashes).root();
      const cp = await sign(trx, tenantId, { treeSize: size, root });
      checkpoint = { size, at: cp.timestamp };
    }
    await statements.writeLeaf(trx, {
      tenantId,
      event: [tenantId, leafIndex, canonical, leafHex],
      nodes,
      size,
      frontier: next.text,
      checkpoint,
    });
    remember(tenantId, next);
    return { leafIndex, leafHash: leafHex, id };
  }

  /**
   * Appends one event as the next leaf of its tenant's tree. MUST be given the transaction of
   * the change it records. Locks the tenant's tree row until that transaction ends.
   */
  function append(trx: Transaction<Database>, input: AuditEventInput): Promise<AppendedEvent> {
    return appendIn(trx, input);
  }

  /**
   * `AuditRecorder.appendAlone`. SQLite: holds Kysely's connection and runs BEGIN IMMEDIATE
   * (the write lock up front: no upgrade that could fail half-way), the appends and COMMIT on it
   * synchronously; ROLLBACK if anything fails, so no event is left half-written.
   */
  async function appendAlone(events: readonly AuditEventInput[]): Promise<AppendedEvent[]> {
    const writer = dialect === 'sqlite' ? deps.writer : undefined;
    const all = async (trx: Db) => {
      const out: AppendedEvent[] = [];
      for (const event of events) out.push(await appendIn(trx, event));
      return out;
    };
    if (writer === undefined) return db.transaction().execute(all);
    return db.connection().execute(async (connection) => {
      writer.execute('begin immediate', []);
      try {
        const out = await all(connection);
        writer.execute('commit', []);
        return out;
      } catch (error) {
        if (writer.inTransaction) writer.execute('rollback', []);
        throw error;
      }
    });
  }

  /** A checkpoint of the tenant's current tree: the stored one, else signed now. */
  async function checkpoint(tenantId: string): Promise<SignedCheckpoint> {
    const cp = await db.transaction().execute(async (trx) => {
      const head = await lockTree(trx, dialect, tenantId);
      const cp = await sign(trx, tenantId, { treeSize: head.tree.size, root: head.tree.root() });
      await saveTree(trx, tenantId, head.tree, { size: head.tree.size, at: cp.timestamp });
      return cp;
    });
    await publishToWitness([tenantId]);
    return cp;
  }

  // Largest size handed to the witness per tenant; loaded from the witness once.
  let witnessed: Map<string, number> | undefined;
  let publishing: Promise<number> = Promise.resolve(0);

  /**
   * Gives the witness every committed checkpoint of this key it has not seen yet (of `tenantIds`,
   * or of every tenant), in tree-size order; returns how many. Reads committed rows only, so a
   * checkpoint signed in a transaction that later rolls back is never witnessed. Calls are
   * serialised; the server calls it periodically, `checkpoint` and `verify` after they commit.
   */
  function publishToWitness(tenantIds?: readonly string[]): Promise<number> {
    const witness = deps.witness;
    if (witness === undefined) return Promise.resolve(0);
    const run = async () => {
      witnessed ??= new Map(await witness.witnessedSizes?.());
      const seen = witnessed;
      const keyId = signingKey().keyId;
      let tenants = tenantIds;
      if (tenants === undefined) {
        // Only tenants whose last checkpoint the witness has not seen.
        const heads = await db
          .selectFrom('audit_tree')
          .select(['tenant_id', 'checkpoint_size'])
          .execute();
        tenants = heads
          .filter((h) => Number(h.checkpoint_size) > (seen.get(h.tenant_id) ?? -1))
          .map((h) => h.tenant_id);
      }
      const fresh: SignedCheckpoint[] = [];
      for (const tenantId of tenants) {
        const rows = await db
          .selectFrom('audit_checkpoints')
          .select(['tenant_id', 'tree_size', 'root_hash', 'signed_at', 'key_id', 'signature'])
          .where('tenant_id', '=', tenantId)
          .where('key_id', '=', keyId)
          .where('tree_size', '>', seen.get(tenantId) ?? -1)
          .orderBy('tree_size')
          .execute();
        for (const r of rows) {
          fresh.push({
            tenantId: r.tenant_id,
            treeSize: Number(r.tree_size),
            rootHash: r.root_hash,
            timestamp: r.signed_at,
            keyId: r.key_id,
            signature: r.signature,
          });
        }
      }
      await witness.write(fresh);
      for (const cp of fresh) seen.set(cp.tenantId, cp.treeSize);
      return fresh.length;
    };
    publishing = publishing.then(run, run);
    return publishing;
  }

  /**
   * Verifies the tenant's whole log, then signs exactly what was verified (its size and root),
   * never events appended meanwhile.
   */
  async function verify(
    tenantId: string,
    options: { beforeSign?: (summary: LogVerificationSummary) => Promise<unknown> } = {},
  ) {
    const summary = await verifyTenantLog(db, tenantId, [signingKey().publicKey]);
    // e.g. the witness check: nothing is signed for a log that fails it.
    await options.beforeSign?.(summary);
    const head = await db
      .transaction()
      .execute((trx) => sign(trx, tenantId, { treeSize: summary.treeSize, root: summary.root }));
    await publishToWitness([tenantId]);
    return { summary, checkpoint: head };
  }

  return {
    append,
    appendAlone,
    checkpoint,
    verify,
    publishToWitness,
    /** Signs (or returns the stored checkpoint of) a head computed in `trx`. */
    signHead: sign,
    /** The public half of the signing key (the trusted key when verifying). */
    signingKey: () => {
      const k = signingKey();
      return { keyId: k.keyId, publicKeyPem: k.publicKeyPem, publicKey: k.publicKey };
    },
  };
}

export type AuditService = ReturnType<typeof createAuditService>;
