import { describe, expect, it } from 'vitest';
import { AppError } from '../../errors.ts';
import type { Actor, Role } from './actor.ts';
import { weakerRole } from './actor.ts';
import { authorize, decide, mayGrantRole } from './policy.ts';

const request = { requestId: 'r1', ip: null, userAgent: null };
const user = (role: Role): Actor => ({
  kind: 'user',
  tenantId: 't',
  userId: 'u',
  role,
  sessionId: 's',
  authenticatedAt: null,
  request,
});

describe('policy', () => {
  it('lets a viewer read but not write records', () => {
    expect(decide(user('viewer'), 'read', 'contact').allowed).toBe(true);
    for (const action of ['create', 'update', 'delete', 'import'] as const) {
      expect(decide(user('viewer'), action, 'contact').allowed).toBe(false);
    }
  });

  it('keeps user and API key management to owners and admins', () => {
    expect(decide(user('agent'), 'manage', 'user').allowed).toBe(false);
    expect(decide(user('admin'), 'manage', 'api_key').allowed).toBe(true);
    expect(decide(user('owner'), 'manage', 'user').allowed).toBe(true);
  });

  it('refuses API key management through an API key, whatever its role', () => {
    const key: Actor = {
      kind: 'api_key',
      tenantId: 't',
      userId: 'u',
      role: 'owner',
      apiKeyId: 'k',
      request,
    };
    expect(decide(key, 'manage', 'api_key')).toEqual({
      allowed: false,
      rule: 'api-keys-cannot-manage-api-keys',
    });
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
    expect(weakerRole('owner', 'agent')).toBe('agent');
    expect(weakerRole('viewer', 'admin')).toBe('viewer');
  });
});
