import { sql, type Kysely } from 'kysely';
import { isPostgres } from '../tenant-walls.ts';

/**
 * SQLite: `audit_nodes` becomes a WITHOUT ROWID table, its rows stored in the order of its
 * primary key (tenant, level, index). Its rows are small (one hash each) and always read by that
 * key: `audit verify` reads every subtree hash of a tenant level by level, proofs read a few by
 * index. A rowid table kept the key in a separate index and looked each row up from it, which
 * was half the time verification spent reading subtree hashes.
 *
 * Same columns, primary key and foreign key; rows copied as they are. The rebuild runs in one
 * transaction (SQLite migrations run outside one). PostgreSQL: unchanged.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  if (!isPostgres(db)) await rebuild(db, sql` without rowid`);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  if (!isPostgres(db)) await rebuild(db, sql``);
}

async function rebuild(db: Kysely<unknown>, options: ReturnType<typeof sql>): Promise<void> {
  await sql`begin immediate`.execute(db);
  try {
    await sql`create table audit_nodes_0018 (
      tenant_id text not null references tenants (id),
      level integer not null,
      idx bigint not null,
      hash text not null,
      constraint audit_nodes_pk primary key (tenant_id, level, idx)
    )${options}`.execute(db);
    await sql`insert into audit_nodes_0018 (tenant_id, level, idx, hash)
      select tenant_id, level, idx, hash from audit_nodes order by tenant_id, level, idx`.execute(
      db,
    );
    await sql`drop table audit_nodes`.execute(db);
    await sql`alter table audit_nodes_0018 rename to audit_nodes`.execute(db);
    await sql`commit`.execute(db);
  } catch (error) {
    await sql`rollback`.execute(db);
    throw error;
  }
}
