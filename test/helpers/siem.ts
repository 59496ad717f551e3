import type { Kysely } from 'kysely';
import type { Database } from '../../src/db/schema.ts';
import { createTestContext, type Session, type TestContext } from './context.ts';

/** Every audit event id in the database (all tenants). */
export async function allEventIds(db: Kysely<Database>): Promise<string[]> {
  const rows = await db.selectFrom('audit_events').select('id').execute();
  return rows.map((r) => r.id);
}

/** The event ids carried in the structured data of received syslog lines. */
export function receivedIds(lines: readonly string[]): Set<string> {
  const ids = new Set<string>();
  for (const line of lines) {
    const m = /\[custos@32473 [^\]]*?eventId="([^"]+)"/.exec(line);
    if (m) ids.add(m[1]!);
  }
  return ids;
}

/** Sum of every tenant's SIEM cursor for a destination. */
export async function cursorTotal(db: Kysely<Database>, destination: string): Promise<number> {
  const rows = await db
    .selectFrom('siem_cursors')
    .select('next_leaf_index')
    .where('destination', '=', destination)
    .execute();
  return rows.reduce((sum, r) => sum + Number(r.next_leaf_index), 0);
}

/** Polls `check` until it holds or `timeoutMs` passes; returns its last answer. */
export async function eventually(check: () => Promise<boolean> | boolean, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return true;
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** SIEM settings for tests that run the worker's loop: a 50 ms poll, retries capped at 1 s. */
export const QUICK_SIEM_LOOP = {
  CUSTOS_SIEM_INTERVAL_MS: '50',
  CUSTOS_SIEM_RETRY_MAX_SECONDS: '1',
} as const;

/** A test context that streams to a SIEM receiver, with a tenant's owner signed in. */
export interface SiemTestContext extends TestContext {
  owner: Session;
  /** Stops the SIEM worker, closes the context, then shuts the receiver. */
  close(): Promise<void>;
}

/**
 * `createTestContext(env)` (`env` names the receiver the caller started) and a new tenant.
 * `closeReceiver` runs last at `close`, or at once when the context cannot be made.
 */
export async function createSiemTestContext(
  env: Record<string, string>,
  closeReceiver: () => Promise<void>,
): Promise<SiemTestContext> {
  let ctx: TestContext | undefined;
  let owner: Session;
  try {
    ctx = await createTestContext(env);
    owner = await ctx.tenant();
  } catch (error) {
    await ctx?.close();
    await closeReceiver();
    throw error;
  }
  const made = ctx;
  return {
    ...made,
    owner,
    async close() {
      try {
        await made.services.siem.stop();
        await made.close();
      } finally {
        await closeReceiver();
      }
    },
  };
}
