import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestContext, type Session, type TestContext } from '../helpers/context.ts';
import { IMPORT_BATCH_ROWS } from '../../src/modules/contacts/import-store.ts';

/**
 * A contact import keeps to the caller's record scope: it merges only into contacts the caller
 * may update and matches company names only among companies the caller may read. A duplicate
 * e-mail of someone else's contact is skipped (never merged); a company out of read scope is an
 * unknown name.
 */
let ctx: TestContext;
beforeAll(async () => {
  ctx = await createTestContext();
});
afterAll(async () => ctx?.close());

type Json = Record<string, unknown>;

const call = (s: Session, method: 'GET' | 'POST' | 'PUT', url: string, payload?: object) =>
  ctx.app.inject({ method, url, headers: s.headers, ...(payload ? { payload } : {}) });

const importCsv = (s: Session, csv: string, query: string) =>
  ctx.app.inject({
    method: 'POST',
    url: `/api/v1/contacts/import${query}`,
    headers: { ...s.headers, 'content-type': 'text/csv' },
    payload: csv,
  });

async function made(s: Session, resource: 'contacts' | 'companies', payload: object) {
  const res = await call(s, 'POST', `/api/v1/${resource}`, payload);
  expect(res.statusCode, res.body).toBe(201);
  return res.json<Json & { id: string }>();
}

/** A contact as the tenant owner sees it (every field in clear, any owner). */
async function stored(owner: Session, id: string) {
  const res = await call(owner, 'GET', `/api/v1/contacts/${id}`);
  expect(res.statusCode, res.body).toBe(200);
  return res.json<Json>();
}

/** The contacts `s` sees with e-mail `email` (list filters in SQL by the caller's scope). */
async function byEmail(s: Session, email: string) {
  const res = await call(s, 'GET', `/api/v1/contacts?email=${encodeURIComponent(email)}`);
  expect(res.statusCode, res.body).toBe(200);
  return res.json<{ items: Json[] }>().items;
}

/** A tenant with two agents, a manager in a team with the first agent, and their records. */
async function seeded() {
  const owner = await ctx.tenant();
  const agent = await ctx.user(owner, 'agent');
  const colleague = await ctx.user(owner, 'agent');
  const manager = await ctx.user(owner, 'manager');
  const team = (await call(owner, 'POST', '/api/v1/teams', { name: 'North' })).json<Json>();
  for (const s of [manager, agent]) {
    const res = await call(owner, 'PUT', `/api/v1/teams/${String(team.id)}/members/${s.userId}`);
    expect(res.statusCode, res.body).toBe(200);
  }
  const theirs = await made(colleague, 'contacts', {
    firstName: 'Theirs',
    lastName: 'Keep',
    email: 'theirs@x.example',
    phone: '+1 415 555 2671',
  });
  const mine = await made(agent, 'contacts', {
    firstName: 'Mine',
    lastName: 'Old',
    email: 'mine@x.example',
  });
  const ownCompany = await made(agent, 'companies', { name: 'Own Co' });
  const hidden = await made(colleague, 'companies', { name: 'Hidden Co' });
  return { owner, agent, colleague, manager, theirs, mine, ownCompany, hidden };
}

describe('contact import within the record scope', () => {
  it('never merges an agent’s row into a colleague’s contact; the colleague’s stays unchanged', async () => {
    const { owner, agent, theirs } = await seeded();
    const before = await stored(owner, theirs.id);
    const csv =
      'first_name,last_name,email,phone\n' +
      'Evil,Overwrite,THEIRS@x.example,+44 20 7946 0958\n' +
      'Again,Overwrite,theirs@x.example,\n';
    for (const mode of ['all-or-nothing', 'best-effort']) {
      const res = await importCsv(agent, csv, `?mode=${mode}&onDuplicate=merge`);
      expect(res.statusCode, res.body).toBe(200);
      expect(res.json()).toMatchObject({
        committed: true,
        total: 2,
        created: 0,
        updated: 0,
        skipped: 2,
        failed: 0,
      });
    }
    const after = await stored(owner, theirs.id);
    expect(after).toEqual(before);
    expect(after).toMatchObject({
      firstName: 'Theirs',
      lastName: 'Keep',
      phone: '+1 415 555 2671',
      version: 1,
    });
    // Nor was a second contact with that e-mail created for the agent.
    expect(await byEmail(agent, 'theirs@x.example')).toEqual([]);
    expect(await byEmail(owner, 'theirs@x.example')).toHaveLength(1);
  });

  it('keeps refusing the colleague’s e-mail when it comes again in a later batch', async () => {
    const { owner, agent, theirs } = await seeded();
    const before = await stored(owner, theirs.id);
    // The first and the last row carry the colleague's e-mail; new rows between fill the first
    // batch.
    const fillers = Array.from({ length: IMPORT_BATCH_ROWS }, (_, i) => `F${i},f${i}@x.example`);
    const csv = ['first_name,email', 'Evil,theirs@x.example', ...fillers, 'Late,theirs@x.example'];
    const res = await importCsv(
      agent,
      `${csv.join('\n')}\n`,
      '?mode=best-effort&onDuplicate=merge',
    );
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toMatchObject({
      total: IMPORT_BATCH_ROWS + 2,
      created: IMPORT_BATCH_ROWS,
      updated: 0,
      skipped: 2,
    });
    expect(await stored(owner, theirs.id)).toEqual(before);
  });

  it('merges an agent’s row into their own contact', async () => {
    const { owner, agent, mine } = await seeded();
    const csv = 'first_name,email,title\nMerged,MINE@x.example,Chief\n';
    const res = await importCsv(agent, csv, '?onDuplicate=merge');
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toMatchObject({ created: 0, updated: 1, skipped: 0, failed: 0 });
    expect(await stored(owner, mine.id)).toMatchObject({
      firstName: 'Merged',
      lastName: 'Old',
      title: 'Chief',
      version: 2,
      ownerId: agent.userId,
    });
  });

  it('matches company names only among the companies the agent may read', async () => {
    const { owner, agent, ownCompany, hidden } = await seeded();
    const csv =
      'first_name,email,company\n' +
      'Ann,ann@x.example,Own Co\n' +
      'Ben,ben@x.example,Hidden Co\n' +
      'Cy,cy@x.example,Nowhere Co\n';
    const res = await importCsv(agent, csv, '?mode=best-effort&companies=match');
    expect(res.statusCode, res.body).toBe(200);
    const report = res.json<{ created: number; failed: number; errors: Json[] }>();
    expect(report).toMatchObject({ created: 1, failed: 2, companiesCreated: 0 });
    // The colleague's company name fails exactly like a name the tenant lacks: no oracle.
    const [hiddenError, unknownError] = report.errors;
    expect(hiddenError).toMatchObject({ row: 3, field: 'company' });
    expect(unknownError).toMatchObject({ row: 4, field: 'company' });
    expect(hiddenError!.reason).toBe(unknownError!.reason);
    const [ann] = await byEmail(agent, 'ann@x.example');
    expect(ann).toMatchObject({ companyId: ownCompany.id });
    expect(await byEmail(owner, 'ben@x.example')).toEqual([]);

    // companies=create: the out-of-scope name gets a new company of the agent's, not a link.
    const created = await importCsv(
      agent,
      'first_name,email,company\nDee,dee@x.example,Hidden Co\n',
      '?companies=create',
    );
    expect(created.statusCode, created.body).toBe(200);
    expect(created.json()).toMatchObject({ created: 1, companiesCreated: 1, failed: 0 });
    const [dee] = await byEmail(agent, 'dee@x.example');
    expect(dee!.companyId).not.toBe(hidden.id);
    const company = (
      await call(agent, 'GET', `/api/v1/companies/${String(dee!.companyId)}`)
    ).json<Json>();
    expect(company).toMatchObject({ name: 'Hidden Co', ownerId: agent.userId });
  });

  it('lets a manager merge and match within their team only', async () => {
    const { owner, manager, theirs, mine, ownCompany } = await seeded();
    const before = await stored(owner, theirs.id);
    const csv =
      'first_name,email,company\n' +
      'Team,mine@x.example,Own Co\n' +
      'Other,theirs@x.example,\n' +
      'Lost,lost@x.example,Hidden Co\n';
    const res = await importCsv(
      manager,
      csv,
      '?mode=best-effort&onDuplicate=merge&companies=match',
    );
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toMatchObject({ created: 0, updated: 1, skipped: 1, failed: 1 });
    // The teammate's contact is merged and linked to the teammate's company.
    expect(await stored(owner, mine.id)).toMatchObject({
      firstName: 'Team',
      companyId: ownCompany.id,
      version: 2,
    });
    expect(await stored(owner, theirs.id)).toEqual(before);
  });

  it('leaves the owner’s import as it was: merges and matches across the tenant', async () => {
    const { owner, theirs, mine, hidden } = await seeded();
    const csv =
      'first_name,email,company\nT2,theirs@x.example,Hidden Co\nM2,mine@x.example,Own Co\n';
    const res = await importCsv(owner, csv, '?onDuplicate=merge&companies=match');
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toMatchObject({ created: 0, updated: 2, skipped: 0, failed: 0 });
    expect(await stored(owner, theirs.id)).toMatchObject({
      firstName: 'T2',
      companyId: hidden.id,
      version: 2,
    });
    expect(await stored(owner, mine.id)).toMatchObject({ firstName: 'M2', version: 2 });
  });

  it('does not let an open break-glass grant widen the merge scope', async () => {
    const { owner, agent, theirs } = await seeded();
    const role = await call(owner, 'POST', '/api/v1/roles', {
      name: 'clinician',
      spec: { base: 'agent', capabilities: { break_glass: 'manage' } },
    });
    expect(role.statusCode, role.body).toBe(201);
    const assigned = await call(owner, 'PUT', `/api/v1/users/${agent.userId}/custom-role`, {
      roleId: role.json<Json>().id,
    });
    expect(assigned.statusCode, assigned.body).toBe(200);
    const grant = await call(agent, 'POST', '/api/v1/break-glass', {
      reason: 'Patient unconscious in ER, need allergy notes now',
      minutes: 10,
    });
    expect(grant.statusCode, grant.body).toBe(201);
    // The grant does widen reading: the colleague's contact is now in reach.
    expect((await call(agent, 'GET', `/api/v1/contacts/${theirs.id}`)).statusCode).toBe(200);
    const before = await stored(owner, theirs.id);
    const res = await importCsv(
      agent,
      'first_name,email\nEvil,theirs@x.example\n',
      '?onDuplicate=merge',
    );
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toMatchObject({ created: 0, updated: 0, skipped: 1, failed: 0 });
    expect(await stored(owner, theirs.id)).toEqual(before);
  });
});
