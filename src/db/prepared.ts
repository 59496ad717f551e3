import type { Compilable, CompiledQuery, Kysely } from 'kysely';
import type { SyncReader } from './database.ts';

/**
 * A query built and compiled once per database, then run with new parameter values. Kysely
 * builds and compiles a query tree on every call (tens of microseconds); for the queries every
 * request runs (session lookup, record by id) that was the largest share of a request's cost.
 *
 * The builder receives `param(name)`, which returns a marker value; after compiling, the marker
 * positions in the parameter list say where each named value goes. Placeholders differ per
 * dialect (`?` on SQLite, `$1` on PostgreSQL), hence one compiled form per Kysely instance.
 *
 * @example
 * ```ts
 * const byId = prepared((db, p) => db.selectFrom('users').select('name').where('id', '=', p('id')));
 * const rows = await byId.run(db, { id });
 * ```
 */
const MARK = '\u0000custos-param:';

export function prepared<DB, R, P extends string>(
  build: (db: Kysely<DB>, param: (name: P) => string) => Compilable<R>,
) {
  // The SQL text depends only on the dialect, so one compiled form per adapter class serves every
  // database and transaction of that dialect.
  const cache = new Map<unknown, { compiled: CompiledQuery<R>; slots: (P | undefined)[] }>();

  function compiledFor(db: Kysely<DB>) {
    const key = db.getExecutor().adapter.constructor;
    let entry = cache.get(key);
    if (!entry) {
      const compiled = build(db, (name) => `${MARK}${name}`).compile();
      const slots = compiled.parameters.map((v) =>
        typeof v === 'string' && v.startsWith(MARK) ? (v.slice(MARK.length) as P) : undefined,
      );
      entry = { compiled, slots };
      cache.set(key, entry);
    }
    return entry;
  }

  function bind(compiled: CompiledQuery<R>, slots: (P | undefined)[], values: Record<P, unknown>) {
    return compiled.parameters.map((v, i) => {
      const slot = slots[i];
      return slot === undefined ? v : values[slot];
    });
  }

  return {
    /**
     * Runs the query. With a `reader` (SQLite's read-only connection) and outside a transaction,
     * it reads synchronously there; inside a transaction it must see the transaction's own
     * writes, so it goes through `db`.
     */
    async run(db: Kysely<DB>, values: Record<P, unknown>, reader?: SyncReader): Promise<R[]> {
      const now = this.readNow(db, values, reader);
      if (now) return now;
      const { compiled, slots } = compiledFor(db);
      const result = await db.executeQuery<R>({
        ...compiled,
        parameters: bind(compiled, slots, values),
      });
      return result.rows;
    },
    /**
     * The rows at once when `reader` can serve the query (as in `run`), else undefined: for the
     * per-request reads, which then cost no promise on SQLite.
     */
    readNow(db: Kysely<DB>, values: Record<P, unknown>, reader?: SyncReader): R[] | undefined {
      if (!reader || db.isTransaction) return undefined;
      const { compiled, slots } = compiledFor(db);
      return reader.all(compiled.sql, bind(compiled, slots, values)) as R[];
    },
  };
}
