import type { AuditEventBody } from '../audit/event.ts';

/** OCSF schema version the mapping follows. */
export const OCSF_VERSION = '1.1.0';

/** OCSF severity_id: 1 Informational, 2 Low, 3 Medium, 4 High, 5 Critical. */
export type OcsfSeverity = 1 | 2 | 3 | 4 | 5;

interface ClassInfo {
  classUid: number;
  className: string;
  categoryUid: number;
  categoryName: string;
}

const AUTHENTICATION: ClassInfo = {
  classUid: 3002,
  className: 'Authentication',
  categoryUid: 3,
  categoryName: 'Identity & Access Management',
};
const ACCOUNT_CHANGE: ClassInfo = {
  classUid: 3001,
  className: 'Account Change',
  categoryUid: 3,
  categoryName: 'Identity & Access Management',
};
const API_ACTIVITY: ClassInfo = {
  classUid: 6003,
  className: 'API Activity',
  categoryUid: 6,
  categoryName: 'Application Activity',
};
/** Key management (issue 3): the keys are the managed entities. */
const ENTITY_MANAGEMENT: ClassInfo = {
  classUid: 3004,
  className: 'Entity Management',
  categoryUid: 3,
  categoryName: 'Identity & Access Management',
};
const BASE_EVENT: ClassInfo = {
  classUid: 0,
  className: 'Base Event',
  categoryUid: 0,
  categoryName: 'Uncategorized',
};

export interface OcsfClassification {
  class: ClassInfo;
  activityId: number;
  activityName: string;
  severityId: OcsfSeverity;
}

const OTHER = 99;

/**
 * Which OCSF class and activity an audit event is. Identity events: sign-in, sign-out, session
 * end, MFA and step-up are Authentication (3002); password, MFA factor and lock changes are
 * Account Change (3001); record changes are API Activity (6003); key management is Entity
 * Management (3004); anything else Base Event (0).
 */
export function classify(e: Pick<AuditEventBody, 'type' | 'outcome'>): OcsfClassification {
  const failed = e.outcome === 'failure';
  const auth = (activityId: number, activityName: string, severityId: OcsfSeverity = 1) => ({
    class: AUTHENTICATION,
    activityId,
    activityName,
    severityId: failed && severityId < 2 ? 2 : severityId,
  });
  const account = (activityId: number, activityName: string, severityId: OcsfSeverity = 2) => ({
    class: ACCOUNT_CHANGE,
    activityId,
    activityName,
    severityId,
  });
  switch (e.type) {
    case 'auth.login.succeeded':
    case 'auth.login.failed':
      return auth(1, 'Logon');
    case 'auth.mfa.failed':
      return auth(1, 'Logon', 3);
    case 'auth.mfa.recovery_code_used':
      return auth(1, 'Logon', 2);
    case 'auth.logout':
    case 'auth.session.revoked':
      return auth(2, 'Logoff');
    case 'auth.step_up.succeeded':
    case 'auth.step_up.failed':
      return auth(OTHER, 'Step-up');
    case 'auth.password.changed':
      return account(3, 'Password Change');
    case 'auth.password.change_failed':
      return account(3, 'Password Change', 3);
    case 'auth.password_reset.requested':
    case 'auth.password_reset.completed':
      return account(4, 'Password Reset');
    case 'auth.password_reset.failed':
      return account(4, 'Password Reset', 3);
    case 'auth.email.change_requested':
    case 'auth.email.changed':
      return account(OTHER, 'Email Change');
    case 'auth.email.change_failed':
      return account(OTHER, 'Email Change', 3);
    case 'auth.passkey.renamed':
      return account(OTHER, 'Passkey Rename', 1);
    case 'auth.passkey.failed':
      return auth(1, 'Logon', 3);
    case 'auth.passkey.clone_detected':
      return auth(1, 'Logon', 4);
    case 'auth.mfa.recovery_codes_regenerated':
      return account(OTHER, 'MFA Recovery Codes Regenerated', 3);
    case 'auth.password.rehashed':
      return account(OTHER, 'Password Rehash', 1);
    case 'auth.mfa.enrolled':
      return account(10, 'MFA Factor Enable');
    case 'auth.mfa.removed':
      return account(11, 'MFA Factor Disable', 3);
    case 'auth.account.locked':
      return account(9, 'Lock', 4);
    case 'auth.account.unlocked':
      return account(OTHER, 'Unlock', 3);
    case 'user.created':
      return account(1, 'Create');
    case 'user.enabled':
      return account(2, 'Enable');
    case 'user.disabled':
      return account(5, 'Disable', 3);
    case 'user.deleted':
      return account(6, 'Delete', 3);
    case 'user.role_changed':
      return account(7, 'Attach Policy', 3);
    case 'record.created':
      return { class: API_ACTIVITY, activityId: 1, activityName: 'Create', severityId: 1 };
    case 'record.read':
      return { class: API_ACTIVITY, activityId: 2, activityName: 'Read', severityId: 1 };
    case 'record.updated':
      return { class: API_ACTIVITY, activityId: 3, activityName: 'Update', severityId: 1 };
    case 'record.deleted':
      return { class: API_ACTIVITY, activityId: 4, activityName: 'Delete', severityId: 2 };
    // --- Data transfer events (DataTransferEventType): bulk reads and writes of contacts ---
    case 'contacts.exported':
      return { class: API_ACTIVITY, activityId: 2, activityName: 'Read', severityId: 2 };
    case 'contacts.imported':
      return { class: API_ACTIVITY, activityId: 1, activityName: 'Create', severityId: 2 };
    // Key management: which key changed is in `entity`.
    case 'keys.rotated':
      return { class: ENTITY_MANAGEMENT, activityId: 3, activityName: 'Update', severityId: 2 };
    case 'keys.reencryption_started':
    case 'keys.reencrypted':
      return { class: ENTITY_MANAGEMENT, activityId: 3, activityName: 'Update', severityId: 1 };
    case 'keys.version_retired':
      return { class: ENTITY_MANAGEMENT, activityId: 4, activityName: 'Delete', severityId: 3 };
    case 'keys.root_key_created':
      return { class: ENTITY_MANAGEMENT, activityId: 1, activityName: 'Create', severityId: 3 };
    // Masking, reveal and break-glass (src/modules/records/reveal.ts, src/modules/break-glass).
    case 'record.revealed':
      return { class: API_ACTIVITY, activityId: 2, activityName: 'Read', severityId: 3 };
    case 'auth.break_glass.opened':
      return auth(OTHER, 'Break-glass Opened', 4);
    case 'auth.break_glass.ended':
      return auth(OTHER, 'Break-glass Ended', 2);
    default:
      return { class: BASE_EVENT, activityId: OTHER, activityName: e.type, severityId: 1 };
  }
}

/** An OCSF event object; `unmapped.custos` keeps the whole audit event and its leaf hash. */
export type OcsfEvent = Record<string, unknown>;

/**
 * The OCSF form of an audit event (JSON output). The event's own fields are kept under
 * `unmapped.custos`, so nothing the log proves is lost in translation; `metadata.uid` is the
 * event id receivers deduplicate on (delivery is at least once).
 */
export function toOcsf(e: AuditEventBody, leafHash: string): OcsfEvent {
  const c = classify(e);
  const status = e.outcome === 'failure' ? { id: 2, name: 'Failure' } : { id: 1, name: 'Success' };
  const actor =
    e.actor.kind === 'user'
      ? { user: { uid: e.actor.id, type: 'User', type_id: 1 } }
      : e.actor.kind === 'api_key'
        ? { user: { uid: e.actor.id, type: 'Service', type_id: 99, credential_uid: e.actor.id } }
        : e.actor.kind === 'system'
          ? { app_name: e.actor.id ?? 'custos' }
          : {};
  const targetUser = e.target?.type === 'user' ? { uid: e.target.id } : undefined;
  const event: OcsfEvent = {
    class_uid: c.class.classUid,
    class_name: c.class.className,
    category_uid: c.class.categoryUid,
    category_name: c.class.categoryName,
    activity_id: c.activityId,
    activity_name: c.activityName,
    type_uid: c.class.classUid * 100 + c.activityId,
    severity_id: c.severityId,
    severity: ['', 'Informational', 'Low', 'Medium', 'High', 'Critical'][c.severityId],
    status_id: status.id,
    status: status.name,
    time: Date.parse(e.occurredAt),
    message: e.type,
    metadata: {
      version: OCSF_VERSION,
      uid: e.id,
      sequence: e.leafIndex,
      tenant_uid: e.tenantId,
      log_name: 'audit',
      correlation_uid: e.requestId ?? undefined,
      product: { name: 'Custos', vendor_name: 'Custos' },
    },
    actor,
    src_endpoint: e.ip === null ? undefined : { ip: e.ip },
    http_request: e.userAgent === null ? undefined : { user_agent: e.userAgent },
    status_detail: e.reason ?? undefined,
    unmapped: { custos: e, leaf_hash: leafHash },
  };
  if (c.class === AUTHENTICATION) {
    event.user = targetUser ?? (e.actor.kind === 'user' ? { uid: e.actor.id } : undefined);
    event.session = e.target?.type === 'session' ? { uid: e.target.id } : undefined;
    event.is_mfa = e.reason === 'mfa' || e.type.startsWith('auth.mfa.') || undefined;
  } else if (c.class === ACCOUNT_CHANGE) {
    event.user = targetUser ?? (e.target ? { uid: e.target.id } : undefined);
  } else if (c.class === ENTITY_MANAGEMENT) {
    event.entity = e.target ? { uid: e.target.id, type: e.target.type } : undefined;
  } else if (c.class === API_ACTIVITY) {
    event.api = { operation: e.type };
    event.resources = e.target ? [{ uid: e.target.id, type: e.target.type }] : undefined;
  }
  return event;
}
