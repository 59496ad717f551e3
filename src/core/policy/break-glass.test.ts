import { describe, expect, it } from 'vitest';
import type { Actor, Role } from './actor.ts';
import { mayBreakGlass } from './break-glass.ts';
import { fieldAccess } from './fields.ts';

const request = { requestId: 'r1', ip: null, userAgent: null };
const user = (role: Role, breakGlass?: { id: string; expiresAt: string }): Actor => ({
  kind: 'user',
  tenantId: 't',
  userId: 'u',
  role,
  sessionId: 's',
  authenticatedAt: null,
  ...(breakGlass ? { breakGlass } : {}),
  request,
});

describe('break-glass in the field decision', () => {
  it('masks a sensitive field of a viewer without a grant and shows it in full with one', () => {
    expect(fieldAccess(user('viewer'), 'contact', 'nationalId').read).toBe('masked');
    const grant = { id: 'g1', expiresAt: '2099-01-01T00:00:00.000Z' };
    expect(fieldAccess(user('viewer', grant), 'contact', 'nationalId')).toEqual({
      read: 'full',
      write: false,
      reveal: true,
      rule: 'break-glass',
    });
  });

  it('keeps write as the role allows under break-glass', () => {
    const grant = { id: 'g1', expiresAt: '2099-01-01T00:00:00.000Z' };
    expect(fieldAccess(user('agent'), 'contact', 'nationalId')).toMatchObject({
      read: 'masked',
      write: true,
    });
    expect(fieldAccess(user('agent', grant), 'contact', 'nationalId')).toEqual({
      read: 'full',
      write: true,
      reveal: true,
      rule: 'break-glass',
    });
    // Not a write grant: an agent still may not give records away.
    expect(fieldAccess(user('agent', grant), 'contact', 'ownerId').write).toBe(false);
    // An expired grant no longer counts.
    const expired = { id: 'g0', expiresAt: '2000-01-01T00:00:00.000Z' };
    expect(fieldAccess(user('viewer', expired), 'contact', 'nationalId').read).toBe('masked');
  });

  it('asks the permission model for the break_glass capability', () => {
    expect(mayBreakGlass(user('owner'))).toEqual({
      allowed: true,
      rule: 'owner: manage break_glass',
    });
    expect(mayBreakGlass(user('admin')).allowed).toBe(true);
    for (const role of ['manager', 'agent', 'viewer', 'auditor'] as const) {
      expect(mayBreakGlass(user(role)), role).toMatchObject({ allowed: false });
    }
    // A custom role given the capability (clinical staff): the model, not a list of roles.
    const clinician: Actor = {
      ...user('agent'),
      customRole: {
        id: 'c1',
        name: 'clinician',
        version: 1,
        definition: { base: 'agent', capabilities: { break_glass: 'manage' } },
      },
    } as Actor;
    expect(mayBreakGlass(clinician)).toEqual({
      allowed: true,
      rule: 'clinician: manage break_glass',
    });
    const key: Actor = {
      kind: 'api_key',
      tenantId: 't',
      userId: 'u',
      role: 'owner',
      apiKeyId: 'k',
      request,
    };
    expect(mayBreakGlass(key)).toEqual({ allowed: false, rule: 'break-glass-needs-a-person' });
    const job: Actor = { kind: 'system', tenantId: 't', job: 'cli', role: 'owner', request };
    expect(mayBreakGlass(job).allowed).toBe(false);
  });
});
