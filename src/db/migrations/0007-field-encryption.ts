import { SqliteAdapter, sql, type Kysely } from 'kysely';

/**
 * Field encryption: contacts lose their clear lookup copies (`email_normalized`,
 * `phone_normalized`) and get keyed ones instead:
 *
 * - `email_bidx`, `phone_bidx`, `national_id_bidx`: truncated blind indexes (exact filters; they
 *   collide by design, candidates are confirmed after decryption);
 * - `email_eq`: the untruncated keyed hash of the e-mail, which carries the per-tenant unique
 *   constraint (a truncated index cannot: two different addresses may share it).
 *
 * The values themselves are written as envelopes by the records layer. Rows written before this
 * migration keep their clear values and have no index: they must be re-saved (see README).
 *
 * SQLite cannot drop a column that is part of a UNIQUE constraint, so the table is rebuilt (the
 * documented 12-step procedure, with foreign keys off so that dropping the old table cascades
 * nothing; SQLite migrations do not run inside a transaction).
 */
const KEPT = [
  'id',
  'tenant_id',
  'owner_id',
  'created_at',
  'updated_at',
  'version',
  'first_name',
  'last_name',
  'email',
  'phone',
  'title',
  'company_id',
  'date_of_birth',
  'national_id',
  'address',
  'notes',
] as const;

// A failed probe query would abort PostgreSQL's migration transaction: ask the adapter instead.
const isSqlite = (db: Kysely<unknown>): boolean =>
  db.getExecutor().adapter instanceof SqliteAdapter;

export async function up(db: Kysely<unknown>): Promise<void> {
  if (isSqlite(db)) {
    await sql`PRAGMA foreign_keys = OFF`.execute(db);
    try {
      await db.schema
        .createTable('contacts_0007')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id'))
        .addColumn('owner_id', 'text', (c) => c.references('users.id').onDelete('set null'))
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('updated_at', 'text', (c) => c.notNull())
        .addColumn('version', 'integer', (c) => c.notNull())
        .addColumn('first_name', 'text')
        .addColumn('last_name', 'text')
        .addColumn('email', 'text')
        .addColumn('phone', 'text')
        .addColumn('title', 'text')
        .addColumn('company_id', 'text', (c) => c.references('companies.id').onDelete('set null'))
        .addColumn('date_of_birth', 'text')
        .addColumn('national_id', 'text')
        .addColumn('address', 'text')
        .addColumn('notes', 'text')
        .addColumn('email_bidx', 'text')
        .addColumn('email_eq', 'text')
        .addColumn('phone_bidx', 'text')
        .addColumn('national_id_bidx', 'text')
        .addUniqueConstraint('contacts_tenant_email_eq', ['tenant_id', 'email_eq'])
        .execute();
      const columns = sql.join(KEPT.map((c) => sql.ref(c)));
      await sql`insert into contacts_0007 (${columns}) select ${columns} from contacts`.execute(db);
      await sql`drop table contacts`.execute(db);
      await sql`alter table contacts_0007 rename to contacts`.execute(db);
      const problems = await sql`PRAGMA foreign_key_check`.execute(db);
      if (problems.rows.length > 0) throw new Error('foreign key check failed after rebuild');
    } finally {
      await sql`PRAGMA foreign_keys = ON`.execute(db);
    }
    for (const [name, columns] of [
      ['contacts_tenant_created', ['tenant_id', 'created_at', 'id']],
      ['contacts_tenant_owner', ['tenant_id', 'owner_id']],
    ] as const) {
      await db.schema
        .createIndex(name)
        .on('contacts')
        .columns([...columns])
        .execute();
    }
  } else {
    await db.schema.dropIndex('contacts_tenant_phone').execute();
    await db.schema
      .alterTable('contacts')
      .dropColumn('email_normalized')
      .dropColumn('phone_normalized')
      .addColumn('email_bidx', 'text')
      .addColumn('email_eq', 'text')
      .addColumn('phone_bidx', 'text')
      .addColumn('national_id_bidx', 'text')
      .execute();
    await db.schema
      .alterTable('contacts')
      .addUniqueConstraint('contacts_tenant_email_eq', ['tenant_id', 'email_eq'])
      .execute();
  }
  for (const column of ['email_bidx', 'phone_bidx', 'national_id_bidx'] as const) {
    await db.schema
      .createIndex(`contacts_tenant_${column}`)
      .on('contacts')
      .columns(['tenant_id', column])
      .execute();
  }
}
