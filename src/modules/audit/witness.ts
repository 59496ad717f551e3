import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { KeyObject } from 'node:crypto';
import {
  AuditIntegrityError,
  bytesEqual,
  consistencyProofPlan,
  parseCheckpoint,
  proofFromPlan,
  verifyCheckpoint,
  verifyConsistency,
  type SignedCheckpoint,
} from '../../core/audit/index.ts';
import {
  formatSyslog,
  frameOctetCounting,
  parseSyslogUrl,
  sendSyslogBatch,
} from '../../core/siem/index.ts';
import { subtreeHashes, type Db } from './repository.ts';

/**
 * Somewhere outside the database that keeps every signed tree head it is given. Whoever later
 * rewrites the whole database (events, subtree hashes and checkpoints re-signed with a stolen
 * key) cannot rewrite what the witness saw, so `custos audit verify --witness` detects it.
 *
 * Only committed checkpoints are given to a witness (see `createAuditService`): a head of a
 * rolled-back transaction would later look like a rewrite.
 */
export interface Witness {
  /** Records the heads (in tree-size order per tenant). Throws if they could not be kept. */
  write(heads: readonly SignedCheckpoint[]): Promise<void>;
  /** The largest tree size already witnessed per tenant (to resume without duplicates). */
  witnessedSizes?(): Promise<ReadonlyMap<string, number>>;
}

/** One JSON line per head: the checkpoint exactly as signed (tenantId, treeSize, rootHash, ...). */
export function witnessLine(head: SignedCheckpoint): string {
  return `${JSON.stringify({
    tenantId: head.tenantId,
    treeSize: head.treeSize,
    rootHash: head.rootHash,
    timestamp: head.timestamp,
    keyId: head.keyId,
    signature: head.signature,
  })}\n`;
}

/**
 * Append-only JSON lines file (`CUSTOS_AUDIT_WITNESS_FILE`), opened with O_APPEND so several
 * processes may share it; each batch is one `write` and is flushed to disk (fsync) before the
 * call returns. Keep it on another machine or a WORM mount: on the database host it only helps
 * against someone who can write the database but not the file system.
 */
export function createFileWitness(file: string): Witness {
  return {
    async write(heads) {
      if (heads.length === 0) return;
      await fs.promises.mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
      const handle = await fs.promises.open(file, 'a', 0o600);
      try {
        await handle.write(heads.map(witnessLine).join(''));
        await handle.sync();
      } finally {
        await handle.close();
      }
    },
    async witnessedSizes() {
      const sizes = new Map<string, number>();
      let heads: SignedCheckpoint[];
      try {
        heads = readWitnessFile(file);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') return sizes;
        throw error;
      }
      for (const h of heads)
        sizes.set(h.tenantId, Math.max(sizes.get(h.tenantId) ?? 0, h.treeSize));
      return sizes;
    },
  };
}

/**
 * The seam for a syslog witness: give it a sender of one message (the SIEM module's syslog
 * client), and each head goes out as one JSON message. Whether a message counts as kept once
 * sent is the sender's contract (TCP/TLS with an acknowledging relay for a real witness).
 */
export function createMessageWitness(send: (message: string) => Promise<void>): Witness {
  return {
    async write(heads) {
      for (const head of heads) await send(witnessLine(head).trimEnd());
    },
  };
}

// --- Syslog witness (CUSTOS_AUDIT_WITNESS_SYSLOG) ---

/** APP-NAME and MSGID of a witnessed head in syslog: `<110>1 <time> <host> custos - checkpoint - {...}`. */
export const WITNESS_SYSLOG = { appName: 'custos', msgId: 'checkpoint' } as const;

/** One RFC 5424 message per head (facility 13 log audit, severity 6), MSG = its JSON line. */
export function witnessSyslogMessage(head: SignedCheckpoint, hostname: string): string {
  return formatSyslog({
    facility: 13,
    severity: 6,
    timestamp: new Date(head.timestamp),
    hostname,
    appName: WITNESS_SYSLOG.appName,
    msgId: WITNESS_SYSLOG.msgId,
    msg: witnessLine(head).trimEnd(),
  });
}

/**
 * A syslog receiver as witness (`CUSTOS_AUDIT_WITNESS_SYSLOG`, `tcp://` or `tls://`): each batch of
 * heads goes over one connection with octet-counting framing and counts as kept only once the
 * receiver confirmed it as `sendSyslogBatch` defines (read to the end, then a clean close);
 * otherwise `write` throws and the heads are offered again at the next publication. The
 * receiver should write them where the database's administrators cannot (another host); point
 * `custos audit verify --witness` at the file it writes: lines that are not Custos checkpoints
 * are skipped.
 */
export function createSyslogWitness(options: {
  url: string;
  ca?: string | undefined;
  cert?: string | undefined;
  key?: string | undefined;
  hostname?: string;
  timeoutMs?: number;
}): Witness {
  const target = parseSyslogUrl(options.url);
  const hostname = options.hostname ?? os.hostname();
  return {
    async write(heads) {
      if (heads.length === 0) return;
      await sendSyslogBatch(
        {
          ...target,
          ca: options.ca,
          cert: options.cert,
          key: options.key,
          timeoutMs: options.timeoutMs,
        },
        heads.map((h) => frameOctetCounting(witnessSyslogMessage(h, hostname))),
      );
    },
  };
}

/**
 * Every witness gets every batch, in order. No `witnessedSizes`: after a restart every committed
 * head of the key is offered again (duplicates are harmless to verification).
 */
export function combineWitnesses(witnesses: readonly Witness[]): Witness | undefined {
  if (witnesses.length <= 1) return witnesses[0];
  return {
    async write(heads) {
      for (const w of witnesses) await w.write(heads);
    },
  };
}

/**
 * A line of a syslog file that carries a witnessed head: RFC 5424 (as received, e.g. rsyslog's
 * `%rawmsg%`) with APP-NAME `custos` and MSGID `checkpoint`; its MSG is the JSON. Returns null for
 * another program's line.
 */
function syslogWitnessJson(line: string): string | null {
  const m = /^<[0-9]{1,3}>1 \S+ \S+ (\S+) \S+ (\S+) (?:-|\[.*?\]) (.*)$/.exec(line);
  if (!m || m[1] !== WITNESS_SYSLOG.appName || m[2] !== WITNESS_SYSLOG.msgId) return null;
  return m[3]!.replace(/^\uFEFF/, '');
}

/**
 * Parses a witness file: JSON lines (`CUSTOS_AUDIT_WITNESS_FILE`) or what a syslog receiver wrote
 * (`CUSTOS_AUDIT_WITNESS_SYSLOG`, one RFC 5424 message per line; other messages are skipped).
 * Throws `WITNESS_MALFORMED` naming the line that cannot be read.
 */
export function readWitnessFile(file: string): SignedCheckpoint[] {
  const text = fs.readFileSync(file, 'utf8');
  const heads: SignedCheckpoint[] = [];
  const lines = text.split('\n');
  lines.forEach((line, i) => {
    if (line.trim() === '') return;
    try {
      if (line.startsWith('<')) {
        const json = syslogWitnessJson(line);
        if (json !== null) heads.push(parseCheckpoint(JSON.parse(json)));
        return;
      }
      heads.push(parseCheckpoint(JSON.parse(line)));
    } catch (error) {
      throw new AuditIntegrityError('WITNESS_MALFORMED', `witness line ${i + 1} is malformed`, {
        cause: error,
      });
    }
  });
  return heads;
}

export interface WitnessCheckSummary {
  /** Heads checked (signature, then consistency with the verified log). */
  headsChecked: number;
  /** Largest witnessed size (0 if none). */
  largestWitnessed: number;
}

/**
 * Checks every witnessed head of one tenant against its log, already verified to be `treeSize`
 * leaves with root `root`: the head's signature must verify with a trusted key, its size must not
 * exceed the log, and an RFC 9162 consistency proof built from the stored subtree hashes must
 * show the witnessed tree is a prefix of the verified one. A full rewrite of the database (even
 * with new checkpoints signed by the real key) fails here with `WITNESS_MISMATCH`; a rollback or
 * truncation with `WITNESS_AHEAD`.
 */
export async function checkWitnessedHeads(
  db: Db,
  log: { tenantId: string; treeSize: number; root: Uint8Array },
  heads: readonly SignedCheckpoint[],
  trustedKeys: readonly KeyObject[],
): Promise<WitnessCheckSummary> {
  const mine = heads
    .filter((h) => h.tenantId === log.tenantId)
    .sort((a, b) => a.treeSize - b.treeSize);
  let largest = 0;
  // As in verifyLog: the fault lies in [leafIndex, checkpointTreeSize), leafIndex being the end
  // of the last witnessed head that still fits.
  let consistentUpTo = 0;
  for (const head of mine) {
    const verified = verifyCheckpoint(head, trustedKeys, { tenantId: log.tenantId });
    largest = Math.max(largest, head.treeSize);
    const at = { checkpointTreeSize: head.treeSize, leafIndex: consistentUpTo };
    if (head.treeSize > log.treeSize) {
      throw new AuditIntegrityError(
        'WITNESS_AHEAD',
        `the witness saw ${head.treeSize} events signed at ${head.timestamp}, the log has ${log.treeSize}`,
        at,
      );
    }
    let consistent: boolean;
    if (head.treeSize === log.treeSize || head.treeSize === 0) {
      consistent = head.treeSize === 0 || bytesEqual(verified.root, log.root);
    } else {
      const plan = consistencyProofPlan(head.treeSize, log.treeSize);
      const hashes = await subtreeHashes(db, log.tenantId, plan.flat());
      consistent =
        hashes.every((h) => h !== undefined) &&
        verifyConsistency(
          head.treeSize,
          log.treeSize,
          verified.root,
          log.root,
          proofFromPlan(plan, hashes),
        );
    }
    if (!consistent) {
      throw new AuditIntegrityError(
        'WITNESS_MISMATCH',
        `the witnessed head of ${head.treeSize} events signed at ${head.timestamp} (root ${head.rootHash}) is not a prefix of the stored log: the log was rewritten`,
        at,
      );
    }
    consistentUpTo = head.treeSize;
  }
  return { headsChecked: mine.length, largestWitnessed: largest };
}

/** The configured witnesses: the file, the syslog receiver (TLS files of CUSTOS_SIEM_*), both or none. */
export function witnessFromConfig(config: {
  auditWitnessFile: string | undefined;
  auditWitnessSyslog: string | undefined;
  siemCaFile: string | undefined;
  siemCertFile: string | undefined;
  siemKeyFile: string | undefined;
}): Witness | undefined {
  const read = (file: string | undefined) => (file ? fs.readFileSync(file, 'utf8') : undefined);
  const witnesses: Witness[] = [];
  if (config.auditWitnessFile !== undefined) {
    witnesses.push(createFileWitness(config.auditWitnessFile));
  }
  if (config.auditWitnessSyslog !== undefined) {
    const tls = config.auditWitnessSyslog.startsWith('tls://');
    witnesses.push(
      createSyslogWitness({
        url: config.auditWitnessSyslog,
        ...(tls
          ? {
              ca: read(config.siemCaFile),
              cert: read(config.siemCertFile),
              key: read(config.siemKeyFile),
            }
          : {}),
      }),
    );
  }
  return combineWitnesses(witnesses);
}
