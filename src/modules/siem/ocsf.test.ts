import { describe, expect, it } from 'vitest';
import type { AuditEventBody, DataTransferEventType } from '../audit/event.ts';
import type { IdentityEventType } from '../auth/events.ts';
import type { KeyEventType } from '../keys/events.ts';
import { classify, toOcsf } from './ocsf.ts';

/** Every identity event, with the class and activity it must map to (the compiler checks all are here). */
const EXPECTED: Record<IdentityEventType, [classUid: number, activityId: number]> = {
  'auth.login.succeeded': [3002, 1],
  'auth.login.failed': [3002, 1],
  'auth.logout': [3002, 2],
  'auth.session.revoked': [3002, 2],
  'auth.mfa.failed': [3002, 1],
  'auth.mfa.recovery_code_used': [3002, 1],
  'auth.step_up.succeeded': [3002, 99],
  'auth.step_up.failed': [3002, 99],
  'auth.password.changed': [3001, 3],
  'auth.password.rehashed': [3001, 99],
  'auth.password.change_failed': [3001, 3],
  'auth.password_reset.requested': [3001, 4],
  'auth.password_reset.completed': [3001, 4],
  'auth.password_reset.failed': [3001, 4],
  'auth.email.change_requested': [3001, 99],
  'auth.email.changed': [3001, 99],
  'auth.email.change_failed': [3001, 99],
  'auth.passkey.renamed': [3001, 99],
  'auth.passkey.failed': [3002, 1],
  'auth.passkey.clone_detected': [3002, 1],
  'auth.mfa.recovery_codes_regenerated': [3001, 99],
  'auth.mfa.enrolled': [3001, 10],
  'auth.mfa.removed': [3001, 11],
  'auth.account.locked': [3001, 9],
  'auth.account.unlocked': [3001, 99],
};

function body(over: Partial<AuditEventBody> = {}): AuditEventBody {
  return {
    v: 1,
    tenantId: 'tenant-1',
    leafIndex: 7,
    id: 'event-1',
    type: 'auth.login.succeeded',
    occurredAt: '2026-01-15T09:00:00.000Z',
    actor: { kind: 'user', id: 'user-1' },
    ip: '192.0.2.7',
    userAgent: 'curl/8',
    requestId: 'req-1',
    target: { type: 'session', id: 'session-1' },
    outcome: 'success',
    reason: null,
    fields: [],
    ...over,
  };
}

describe('OCSF mapping of identity events', () => {
  for (const [type, [classUid, activityId]] of Object.entries(EXPECTED)) {
    it(`maps ${type} to class ${classUid}, activity ${activityId}`, () => {
      const outcome = type.endsWith('.failed') ? 'failure' : 'success';
      const event = toOcsf(body({ type, outcome }), 'ab'.repeat(32));
      expect(event.class_uid).toBe(classUid);
      expect(event.category_uid).toBe(3);
      expect(event.activity_id).toBe(activityId);
      expect(event.type_uid).toBe(classUid * 100 + activityId);
      expect(event.status_id).toBe(outcome === 'failure' ? 2 : 1);
      expect(event.severity_id).toBeGreaterThanOrEqual(outcome === 'failure' ? 2 : 1);
    });
  }

  it('fills the authentication fields of a sign-in', () => {
    const event = toOcsf(body({ reason: 'mfa' }), 'cd'.repeat(32));
    expect(event).toMatchObject({
      class_name: 'Authentication',
      activity_name: 'Logon',
      status: 'Success',
      severity: 'Informational',
      time: Date.parse('2026-01-15T09:00:00.000Z'),
      user: { uid: 'user-1' },
      session: { uid: 'session-1' },
      is_mfa: true,
      src_endpoint: { ip: '192.0.2.7' },
      http_request: { user_agent: 'curl/8' },
      metadata: { uid: 'event-1', sequence: 7, tenant_uid: 'tenant-1', version: '1.1.0' },
      unmapped: { leaf_hash: 'cd'.repeat(32), custos: { id: 'event-1', leafIndex: 7 } },
    });
  });

  it('marks a failed sign-in as a failure with its reason, and an account lock as high', () => {
    const failed = toOcsf(
      body({
        type: 'auth.login.failed',
        outcome: 'failure',
        actor: { kind: 'anonymous', id: null },
        target: { type: 'user', id: 'user-9' },
        reason: 'bad_password',
      }),
      '00',
    );
    expect(failed).toMatchObject({
      status: 'Failure',
      status_id: 2,
      severity_id: 2,
      status_detail: 'bad_password',
      user: { uid: 'user-9' },
    });
    expect(classify({ type: 'auth.account.locked', outcome: 'success' }).severityId).toBe(4);
  });

  it('maps record changes to API Activity and anything unknown to Base Event', () => {
    expect(
      toOcsf(body({ type: 'record.updated', target: { type: 'contact', id: 'c-1' } }), '00'),
    ).toMatchObject({
      class_uid: 6003,
      activity_id: 3,
      resources: [{ uid: 'c-1', type: 'contact' }],
    });
    expect(toOcsf(body({ type: 'contact.field_read' }), '00')).toMatchObject({
      class_uid: 0,
      activity_id: 99,
    });
  });
});

/** Every key-management event and its class and activity (the compiler checks all are here). */
const KEY_EVENTS: Record<KeyEventType, [classUid: number, activityId: number, severity: number]> = {
  'keys.rotated': [3004, 3, 2],
  'keys.reencryption_started': [3004, 3, 1],
  'keys.reencrypted': [3004, 3, 1],
  'keys.version_retired': [3004, 4, 3],
  'keys.root_key_created': [3004, 1, 3],
};

describe('OCSF mapping of key-management events', () => {
  for (const [type, [classUid, activityId, severity]] of Object.entries(KEY_EVENTS)) {
    it(`maps ${type} to Entity Management, activity ${activityId}, with the key as entity`, () => {
      const event = toOcsf(
        body({
          type,
          actor: { kind: 'system', id: 'cli' },
          target: { type: 'tenant_data_key', id: 'v2' },
          reason: 'previous_v1',
        }),
        '00',
      );
      expect(event).toMatchObject({
        class_uid: classUid,
        class_name: 'Entity Management',
        category_uid: 3,
        activity_id: activityId,
        type_uid: classUid * 100 + activityId,
        severity_id: severity,
        entity: { uid: 'v2', type: 'tenant_data_key' },
        actor: { app_name: 'cli' },
        status_detail: 'previous_v1',
      });
    });
  }
});

describe('OCSF mapping of reveal and break-glass', () => {
  it('maps a reveal to an API read of medium severity and break-glass to a high authentication event', () => {
    const revealed = toOcsf(
      body({
        type: 'record.revealed',
        target: { type: 'contact', id: 'c1' },
        fields: ['nationalId'],
      }),
      'ab'.repeat(32),
    );
    expect(revealed).toMatchObject({ class_uid: 6003, activity_id: 2, severity_id: 3 });
    const opened = toOcsf(
      body({ type: 'auth.break_glass.opened', breakGlassId: 'g1', reason: 'emergency' }),
      'ab'.repeat(32),
    );
    expect(opened).toMatchObject({ class_uid: 3002, activity_id: 99, severity_id: 4 });
    expect((opened.unmapped as { custos: { breakGlassId: string } }).custos.breakGlassId).toBe(
      'g1',
    );
  });
});

/** Every data transfer event (the compiler checks all are here): API Activity, at least Low. */
const TRANSFER: Record<DataTransferEventType, number> = {
  'contacts.exported': 2,
  'contacts.imported': 1,
};

describe('OCSF mapping of data transfer events', () => {
  for (const [type, activityId] of Object.entries(TRANSFER)) {
    it(`maps ${type} to API Activity ${activityId} with its target and reason`, () => {
      const event = toOcsf(
        body({
          type,
          target: { type: 'contact_import', id: 'imp-1' },
          reason: 'mode=best-effort;source=api;created=1;merged=0;skipped=0;failed=0',
        }),
        '00',
      );
      expect(event).toMatchObject({
        class_uid: 6003,
        activity_id: activityId,
        type_uid: 600300 + activityId,
        severity_id: 2,
        api: { operation: type },
        resources: [{ uid: 'imp-1', type: 'contact_import' }],
        status_detail: 'mode=best-effort;source=api;created=1;merged=0;skipped=0;failed=0',
      });
    });
  }
});
