import { describe, expect, it } from 'vitest';
import { AppError } from '../../errors.ts';
import type { Actor, CustomRole, Role } from './actor.ts';
import { weakerRole } from './actor.ts';
import { fieldAccess } from './fields.ts';
import { authorize, decide, mayGrantRole, scopeOf } from './policy.ts';
import { builtinRoles, exceeds, resolveRole } from './roles.ts';
import { fieldGrant, fieldsOf } from './ability.ts';

const request = { requestId: 'r1', ip: null, userAgent: null };
const user = (role: Role, extra: Partial<Extract<Actor, { kind: 'user' }>> = {}): Actor => ({
  kind: 'user',
  tenantId: 't',
  userId: 'u',
  role,
  sessionId: 's',
  authenticatedAt: null,
  request,
  ...extra,
});
const key = (role: Role, creatorRole: Role): Actor => ({
  kind: 'api_key',
  tenantId: 't',
  userId: 'u',
  role: weakerRole(role, creatorRole),
  creatorRole,
  apiKeyId: 'k',
  request,
});
const custom = (definition: CustomRole['definition'], version = 1): CustomRole => ({
  id: 'role-1',
  name: 'custom',
  version,
  definition,
});

describe('policy', () => {
  it('lets a viewer read but not write records', () => {
    expect(decide(user('viewer'), 'read', 'contact').allowed).toBe(true);
    for (const action of ['create', 'update', 'delete', 'import', 'export'] as const) {
      expect(decide(user('viewer'), action, 'contact').allowed).toBe(false);
    }
  });

  it('gives each built-in role its record scope', () => {
    expect(scopeOf(user('owner'), 'read', 'contact')).toBe('all');
    expect(scopeOf(user('admin'), 'delete', 'deal')).toBe('all');
    expect(scopeOf(user('manager'), 'update', 'contact')).toBe('team');
    expect(scopeOf(user('agent'), 'read', 'contact')).toBe('own');
    expect(scopeOf(user('agent'), 'export', 'contact')).toBe('own');
    expect(scopeOf(user('viewer'), 'read', 'activity')).toBe('all');
    expect(scopeOf(user('auditor'), 'update', 'company')).toBeNull();
  });

  it('keeps user and API key management to owners and admins', () => {
    expect(decide(user('agent'), 'manage', 'user').allowed).toBe(false);
    expect(decide(user('manager'), 'manage', 'users').allowed).toBe(false);
    expect(decide(user('admin'), 'manage', 'api_key').allowed).toBe(true);
    expect(decide(user('owner'), 'manage', 'user').allowed).toBe(true);
  });

  it('lets the auditor read the audit trail and roles but manage nothing', () => {
    expect(decide(user('auditor'), 'read', 'audit')).toEqual({
      allowed: true,
      rule: 'auditor: read audit',
    });
    expect(decide(user('auditor'), 'read', 'roles').allowed).toBe(true);
    expect(decide(user('auditor'), 'manage', 'audit_settings').allowed).toBe(false);
    expect(decide(user('auditor'), 'manage', 'users').allowed).toBe(false);
    expect(decide(user('agent'), 'read', 'audit').allowed).toBe(false);
  });

  it('keeps encryption keys to the owner and break-glass to owners and admins', () => {
    expect(decide(user('owner'), 'manage', 'encryption_keys').allowed).toBe(true);
    expect(decide(user('admin'), 'manage', 'encryption_keys').allowed).toBe(false);
    expect(decide(user('admin'), 'read', 'encryption_keys').allowed).toBe(true);
    expect(decide(user('admin'), 'manage', 'break_glass').allowed).toBe(true);
    expect(decide(user('manager'), 'manage', 'break_glass').allowed).toBe(false);
  });

  it('refuses API key management through an API key, whatever its role', () => {
    expect(decide(key('owner', 'owner'), 'manage', 'api_key')).toEqual({
      allowed: false,
      rule: 'api-keys-cannot-manage-api-keys',
    });
  });

  it('bounds an API key by its creator as they stand now', () => {
    // A key made as auditor by an admin since demoted to agent: no audit access left.
    const k: Actor = { ...key('auditor', 'agent'), role: 'auditor' };
    expect(decide(k, 'read', 'audit').allowed).toBe(false);
    expect(scopeOf(key('admin', 'agent'), 'read', 'contact')).toBe('own');
    expect(fieldAccess(key('admin', 'agent'), 'contact', 'nationalId').read).toBe('masked');
  });

  it('masks sensitive fields for agents and viewers, personal ones for auditors', () => {
    expect(fieldAccess(user('agent'), 'contact', 'nationalId')).toMatchObject({
      read: 'masked',
      write: true,
      reveal: true,
    });
    expect(fieldAccess(user('viewer'), 'contact', 'dateOfBirth')).toMatchObject({
      read: 'masked',
      write: false,
      reveal: false,
    });
    expect(fieldAccess(user('viewer'), 'contact', 'email').read).toBe('full');
    expect(fieldAccess(user('auditor'), 'contact', 'email').read).toBe('masked');
    expect(fieldAccess(user('owner'), 'contact', 'nationalId')).toMatchObject({
      read: 'full',
      write: true,
      reveal: false,
    });
  });

  it('lets only roles that may assign owners write ownerId', () => {
    expect(fieldAccess(user('agent'), 'contact', 'ownerId').write).toBe(false);
    expect(fieldAccess(user('manager'), 'deal', 'ownerId').write).toBe(true);
    expect(fieldAccess(user('agent'), 'deal', 'stage').write).toBe(true);
  });

  it('opens read to all records in full under unexpired break-glass, and only then', () => {
    const open = user('agent', {
      breakGlass: { id: 'bg', expiresAt: new Date(Date.now() + 60_000).toISOString() },
    });
    expect(scopeOf(open, 'read', 'contact')).toBe('all');
    expect(fieldAccess(open, 'contact', 'nationalId')).toMatchObject({
      read: 'full',
      rule: 'break-glass',
    });
    expect(scopeOf(open, 'update', 'contact')).toBe('own');
    const expired = user('agent', {
      breakGlass: { id: 'bg', expiresAt: new Date(Date.now() - 1).toISOString() },
    });
    expect(scopeOf(expired, 'read', 'contact')).toBe('own');
    expect(fieldAccess(expired, 'contact', 'nationalId').read).toBe('masked');
  });

  it('decides a custom role from its base with changes, or from explicit grants', () => {
    const based = user('viewer', {
      customRole: custom({ base: 'agent', records: { deal: { read: 'team' } }, reveal: false }),
    });
    expect(scopeOf(based, 'read', 'deal')).toBe('team');
    expect(decide(based, 'update', 'deal').allowed).toBe(false);
    expect(scopeOf(based, 'update', 'contact')).toBe('own');
    expect(fieldAccess(based, 'contact', 'nationalId').reveal).toBe(false);
    const explicit = user('owner', {
      customRole: custom(
        {
          records: { company: { read: 'all' } },
          classes: { internal: { read: 'full', write: false } },
          fields: { 'contact.email': { read: 'masked', write: false } },
          capabilities: { audit: 'read' },
        },
        2,
      ),
    });
    expect(decide(explicit, 'read', 'contact').allowed).toBe(false);
    expect(decide(explicit, 'read', 'company').allowed).toBe(true);
    expect(decide(explicit, 'read', 'audit').allowed).toBe(true);
    expect(decide(explicit, 'manage', 'users').allowed).toBe(false);
    expect(fieldAccess(explicit, 'contact', 'email').read).toBe('masked');
    expect(fieldAccess(explicit, 'contact', 'firstName').read).toBe('none');
  });

  it('takes a changed custom role (new version) on its next use', () => {
    const v1 = user('viewer', { customRole: custom({ base: 'viewer' }, 10) });
    const v2 = user('viewer', { customRole: custom({ base: 'manager' }, 11) });
    expect(decide(v1, 'update', 'contact').allowed).toBe(false);
    expect(decide(v2, 'update', 'contact').allowed).toBe(true);
  });

  it('finds what a role grants beyond its holder', () => {
    const keys = (['contact', 'deal'] as const).flatMap((r) =>
      fieldsOf(r).map((f) => ({ key: `${r}.${f.field}`, classification: f.classification })),
    );
    const check = (role: Parameters<typeof resolveRole>[0], holder: Role) =>
      exceeds(resolveRole(role), builtinRoles[holder], fieldGrant, keys);
    expect(check({ base: 'agent' }, 'manager')).toBeNull();
    expect(check({ base: 'manager' }, 'agent')).toBe('records.contact.create');
    expect(check({ base: 'viewer', capabilities: { audit: 'read' } }, 'viewer')).toBe(
      'capabilities.audit',
    );
    expect(
      check(
        { base: 'viewer', fields: { 'contact.nationalId': { read: 'full', write: false } } },
        'viewer',
      ),
    ).toBe('fields.contact.nationalId');
    expect(check({ base: 'auditor' }, 'admin')).toBeNull();
  });

  it('throws a forbidden AppError with a stable code', () => {
    try {
      authorize(user('viewer'), 'delete', 'deal');
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(AppError);
      expect((error as AppError).code).toBe('policy.forbidden');
    }
  });

  it('never grants a role above the granter and takes the weaker of two roles', () => {
    expect(mayGrantRole(user('admin'), 'owner')).toBe(false);
    expect(mayGrantRole(user('admin'), 'admin')).toBe(true);
    expect(mayGrantRole(user('admin'), 'auditor')).toBe(true);
    expect(weakerRole('owner', 'agent')).toBe('agent');
    expect(weakerRole('viewer', 'admin')).toBe('viewer');
  });
});
