import { sql, type Kysely } from 'kysely';
import { isPostgres } from '../tenant-walls.ts';

/**
 * `audit_events`: every column of an event other than its key, its canonical bytes and its leaf
 * hash becomes a generated column, read out of the canonical bytes by the database (SQLite:
 * VIRTUAL, computed when read; PostgreSQL: STORED). The columns the API, the filters, the
 * detection rules and the reports read can then never say anything the hashed bytes do not: the
 * database refuses to write them (`cannot UPDATE generated column`), and a change to the bytes
 * is a change to the leaf hash. `audit verify` no longer reads and compares fourteen columns per
 * event; it checks once that the columns are still generated this way (`AUDIT_DERIVED_COLUMNS`).
 *
 * SQLite: the table is rebuilt (a column cannot become generated in place), rows copied by key,
 * in one transaction; PostgreSQL: the columns are dropped and added back as generated, which
 * rewrites the table. Secondary indexes are created again on the generated columns.
 */

/** A generated column: its name, the JSON path it reads, and whether it is NOT NULL. */
export const AUDIT_DERIVED_COLUMNS = [
  ['id', ['id'], true],
  ['type', ['type'], true],
  ['occurred_at', ['occurredAt'], true],
  ['actor_kind', ['actor', 'kind'], true],
  ['actor_id', ['actor', 'id'], false],
  ['ip', ['ip'], false],
  ['user_agent', ['userAgent'], false],
  ['request_id', ['requestId'], false],
  ['target_type', ['target', 'type'], false],
  ['target_id', ['target', 'id'], false],
  ['outcome', ['outcome'], true],
  ['reason', ['reason'], false],
  ['fields', ['fields'], true],
  ['break_glass_id', ['breakGlassId'], false],
] as const satisfies readonly (readonly [string, readonly string[], boolean])[];

const INDEXES: readonly (readonly [string, readonly string[]])[] = [
  ['audit_events_target', ['tenant_id', 'target_type', 'target_id', 'leaf_index']],
  ['audit_events_type', ['tenant_id', 'type', 'leaf_index']],
  ['audit_events_type_time', ['tenant_id', 'type', 'occurred_at']],
  ['audit_events_ip_time', ['tenant_id', 'ip', 'occurred_at']],
  ['audit_events_actor_time', ['tenant_id', 'actor_id', 'occurred_at']],
];

/** SQLite: the definition of one generated column. */
export function sqliteDerivedColumn([name, path, notNull]: (typeof AUDIT_DERIVED_COLUMNS)[number]) {
  const json = `json_extract(canonical, '$.${path.join('.')}')`;
  return `${name} text${notNull ? ' not null' : ''} generated always as (${json}) virtual`;
}

/**
 * The column list of `audit_events` on SQLite, as `CREATE TABLE "audit_events" (...)` stores it
 * after the rebuild: `audit verify` compares the stored definition with it, character for
 * character (a comment or a changed expression is a change).
 */
export const AUDIT_EVENTS_SQLITE_COLUMNS = sqliteColumns(
  ['canonical text not null', 'leaf_hash text not null'],
  AUDIT_DERIVED_COLUMNS.map((column) => sqliteDerivedColumn(column)),
);

/** SQLite: the key and its tenant reference, `columns`, then the primary key. */
function sqliteColumns(...columns: readonly string[][]): string {
  return [
    'tenant_id text not null references tenants (id)',
    'leaf_index bigint not null',
    ...columns.flat(),
    'constraint audit_events_pk primary key (tenant_id, leaf_index)',
  ].join(',\n  ');
}

/** PostgreSQL: the expression of a generated column (`->>` gives the text of a JSON value). */
export function postgresExpression(path: readonly string[]): string {
  if (path[0] === 'fields') return `(canonical::json -> 'fields')::text`;
  const steps = path.map((key, i) => `${i === path.length - 1 ? '->>' : '->'} '${key}'`);
  return `canonical::json ${steps.join(' ')}`;
}

async function createIndexes(db: Kysely<unknown>): Promise<void> {
  for (const [name, columns] of INDEXES) {
    await db.schema
      .createIndex(name)
      .on('audit_events')
      .columns([...columns])
      .execute();
  }
}

async function dropIndexes(db: Kysely<unknown>): Promise<void> {
  for (const [name] of INDEXES) await db.schema.dropIndex(name).ifExists().execute();
}

export async function up(db: Kysely<unknown>): Promise<void> {
  if (isPostgres(db)) {
    await dropIndexes(db);
    const drops = AUDIT_DERIVED_COLUMNS.map(([name]) => sql`drop column ${sql.id(name)}`);
    await sql`alter table audit_events ${sql.join(drops)}`.execute(db);
    const adds = AUDIT_DERIVED_COLUMNS.map(
      ([name, path, notNull]) =>
        sql`add column ${sql.id(name)} text${sql.raw(notNull ? ' not null' : '')} generated always as (${sql.raw(postgresExpression(path))}) stored`,
    );
    await sql`alter table audit_events ${sql.join(adds)}`.execute(db);
    await createIndexes(db);
    return;
  }
  await rebuildSqlite(db, AUDIT_EVENTS_SQLITE_COLUMNS, [
    'tenant_id',
    'leaf_index',
    'canonical',
    'leaf_hash',
  ]);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  if (isPostgres(db)) {
    // The values stay in place, and so do the indexes over them.
    for (const [name] of AUDIT_DERIVED_COLUMNS) {
      await sql`alter table audit_events alter column ${sql.id(name)} drop expression`.execute(db);
    }
    return;
  }
  // The columns as plain text again, filled from the canonical bytes.
  const plain = sqliteColumns(
    AUDIT_DERIVED_COLUMNS.map(([name, , notNull]) => `${name} text${notNull ? ' not null' : ''}`),
    ['canonical text not null', 'leaf_hash text not null'],
  );
  await rebuildSqlite(db, plain, [
    'tenant_id',
    'leaf_index',
    ...AUDIT_DERIVED_COLUMNS.map(([name]) => name),
    'canonical',
    'leaf_hash',
  ]);
}

/** SQLite: `audit_events` rebuilt with `columns`, copying `copied` by key (SQLite runs migrations outside a transaction). */
async function rebuildSqlite(
  db: Kysely<unknown>,
  columns: string,
  copied: readonly string[],
): Promise<void> {
  await sql`begin immediate`.execute(db);
  try {
    await sql`create table audit_events_0021 (\n  ${sql.raw(columns)}\n)`.execute(db);
    const list = sql.raw(copied.join(', '));
    await sql`insert into audit_events_0021 (${list})
      select ${list} from audit_events order by tenant_id, leaf_index`.execute(db);
    await sql`drop table audit_events`.execute(db);
    await sql`alter table audit_events_0021 rename to audit_events`.execute(db);
    await createIndexes(db);
    await sql`commit`.execute(db);
  } catch (error) {
    await sql`rollback`.execute(db);
    throw error;
  }
}
