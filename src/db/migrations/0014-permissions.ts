import { sql, type Kysely } from 'kysely';

/**
 * The permission model (issue 5): the role `member` becomes `agent` (users, API keys, the MFA
 * requirement's role list); custom roles per tenant (`roles`, the definition as JSON); teams and
 * their members; a user's custom role (`users.custom_role_id`); indexes for the record scope
 * (records by owner, team members by user).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`update users set role = 'agent' where role = 'member'`.execute(db);
  await sql`update api_keys set role = 'agent' where role = 'member'`.execute(db);
  await sql`update tenant_settings set mfa_required_roles =
    trim(replace(',' || mfa_required_roles || ',', ',member,', ',agent,'), ',')
    where mfa_required_roles like '%member%'`.execute(db);
  await db.schema
    .createTable('roles')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id'))
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('description', 'text')
    // JSON: CustomRoleSpec (src/core/policy/roles.ts).
    .addColumn('definition', 'text', (c) => c.notNull())
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('updated_at', 'text', (c) => c.notNull())
    .addColumn('version', 'integer', (c) => c.notNull())
    .addUniqueConstraint('roles_tenant_name', ['tenant_id', 'name'])
    .execute();
  await db.schema
    .alterTable('users')
    .addColumn('custom_role_id', 'text', (c) => c.references('roles.id'))
    .execute();
  await db.schema
    .createTable('teams')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id'))
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('updated_at', 'text', (c) => c.notNull())
    .addUniqueConstraint('teams_tenant_name', ['tenant_id', 'name'])
    .execute();
  await db.schema
    .createTable('team_members')
    .addColumn('team_id', 'text', (c) => c.notNull().references('teams.id').onDelete('cascade'))
    .addColumn('user_id', 'text', (c) => c.notNull().references('users.id').onDelete('cascade'))
    .addColumn('tenant_id', 'text', (c) => c.notNull())
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addPrimaryKeyConstraint('team_members_pk', ['team_id', 'user_id'])
    .execute();
  await db.schema
    .createIndex('team_members_user')
    .on('team_members')
    .columns(['tenant_id', 'user_id', 'team_id'])
    .execute();
  // Own and team scope: a tenant's records by owner, in list order.
  for (const table of ['contacts', 'companies', 'deals', 'activities']) {
    await db.schema
      .createIndex(`${table}_owner_list`)
      .on(table)
      .columns(['tenant_id', 'owner_id', 'created_at', 'id'])
      .execute();
  }
}

export async function down(db: Kysely<unknown>): Promise<void> {
  for (const table of ['contacts', 'companies', 'deals', 'activities']) {
    await db.schema.dropIndex(`${table}_owner_list`).execute();
  }
  await db.schema.dropIndex('team_members_user').execute();
  await db.schema.dropTable('team_members').execute();
  await db.schema.dropTable('teams').execute();
  await db.schema.alterTable('users').dropColumn('custom_role_id').execute();
  await db.schema.dropTable('roles').execute();
  await sql`update users set role = 'member' where role in ('agent', 'manager', 'auditor')`.execute(
    db,
  );
  await sql`update api_keys set role = 'member' where role in ('agent', 'manager', 'auditor')`.execute(
    db,
  );
}
