import { SqliteAdapter, sql, type Kysely } from 'kysely';

/**
 * User accounts' e-mail and name encrypted at rest (issue 3, item 1): the clear lookup copy
 * `email_normalized` and its unique constraint go; keyed ones come instead, as contacts got in
 * 0007:
 *
 * - `email_bidx`: truncated blind index (sign-in and password reset find a user by it; it
 *   collides by design, candidates are confirmed after decryption);
 * - `email_eq`: untruncated keyed hash carrying the per-tenant unique constraint.
 *
 * A migration has no keys: the values of existing rows stay in clear here, with null indexes,
 * and are sealed at the next start, before the server listens (`encryptClearUsers`,
 * src/modules/users/backfill.ts), which also makes SQLite rewrite its file without them.
 *
 * SQLite cannot drop a column that is part of a UNIQUE constraint, so the table is rebuilt (the
 * documented 12-step procedure, foreign keys off so that dropping the old table cascades nothing;
 * SQLite migrations do not run inside a transaction).
 */
const KEPT = [
  'id',
  'tenant_id',
  'email',
  'name',
  'role',
  'status',
  'password_hash',
  'created_at',
  'updated_at',
  'version',
  'custom_role_id',
] as const;

// A failed probe query would abort PostgreSQL's migration transaction: ask the adapter instead.
const isSqlite = (db: Kysely<unknown>): boolean =>
  db.getExecutor().adapter instanceof SqliteAdapter;

export async function up(db: Kysely<unknown>): Promise<void> {
  if (isSqlite(db)) {
    await sql`PRAGMA foreign_keys = OFF`.execute(db);
    try {
      await db.schema
        .createTable('users_0019')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id'))
        .addColumn('email', 'text', (c) => c.notNull())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('role', 'text', (c) => c.notNull())
        .addColumn('status', 'text', (c) => c.notNull())
        .addColumn('password_hash', 'text')
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('updated_at', 'text', (c) => c.notNull())
        .addColumn('version', 'integer', (c) => c.notNull())
        .addColumn('custom_role_id', 'text', (c) => c.references('roles.id'))
        .addColumn('email_bidx', 'text')
        .addColumn('email_eq', 'text')
        .addUniqueConstraint('users_tenant_email_eq', ['tenant_id', 'email_eq'])
        .execute();
      const columns = sql.join(KEPT.map((c) => sql.ref(c)));
      await sql`insert into users_0019 (${columns}) select ${columns} from users`.execute(db);
      await sql`drop table users`.execute(db);
      await sql`alter table users_0019 rename to users`.execute(db);
      const problems = await sql`PRAGMA foreign_key_check`.execute(db);
      if (problems.rows.length > 0) throw new Error('foreign key check failed after rebuild');
    } finally {
      await sql`PRAGMA foreign_keys = ON`.execute(db);
    }
  } else {
    // Dropping the column drops the unique constraint over it.
    await db.schema
      .alterTable('users')
      .dropColumn('email_normalized')
      .addColumn('email_bidx', 'text')
      .addColumn('email_eq', 'text')
      .execute();
    await db.schema
      .alterTable('users')
      .addUniqueConstraint('users_tenant_email_eq', ['tenant_id', 'email_eq'])
      .execute();
  }
  await db.schema
    .createIndex('users_tenant_email_bidx')
    .on('users')
    .columns(['tenant_id', 'email_bidx'])
    .execute();
}
