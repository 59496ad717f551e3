import type { Kysely } from 'kysely';
import type { Database } from '../../src/db/schema.ts';

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
