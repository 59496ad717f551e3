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

  it('keeps the capability to people with an administrator role', () => {
    expect(mayBreakGlass(user('owner')).allowed).toBe(true);
    expect(mayBreakGlass(user('admin')).allowed).toBe(true);
    expect(mayBreakGlass(user('member')).allowed).toBe(false);
    expect(mayBreakGlass(user('viewer')).allowed).toBe(false);
    const key: Actor = {
      kind: 'api_key',
      tenantId: 't',
      userId: 'u',
      role: 'owner',
      apiKeyId: 'k',
      request,
    };
    expect(mayBreakGlass(key)).toEqual({ allowed: false, rule: 'break-glass-needs-a-person' });
  });
});
