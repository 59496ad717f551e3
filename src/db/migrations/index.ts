import type { Migration } from 'kysely';
import * as m0001 from './0001-initial.ts';
import * as m0002 from './0002-audit-log.ts';
import * as m0003 from './0003-auth-throttle.ts';
import * as m0004 from './0004-mfa.ts';
import * as m0005 from './0005-tenant-settings.ts';
import * as m0006 from './0006-session-authenticated-at.ts';
import * as m0007 from './0007-field-encryption.ts';
import * as m0008 from './0008-passkeys.ts';
import * as m0009 from './0009-password-reset.ts';
import * as m0010 from './0010-mfa-enforcement.ts';
import * as m0011 from './0011-audit-outbox.ts';
import * as m0012 from './0012-audit-retention.ts';
import * as m0013 from './0013-alerts.ts';
import * as m0014 from './0014-permissions.ts';
import * as m0015 from './0015-break-glass.ts';
import * as m0016 from './0016-tenant-walls.ts';
import * as m0017 from './0017-key-reencryption.ts';
import * as m0018 from './0018-audit-nodes-clustered.ts';
import * as m0019 from './0019-user-encryption.ts';
import * as m0020 from './0020-phone-region.ts';
import * as m0021 from './0021-audit-derived-columns.ts';

/** Every migration, in order. Names are permanent once released: add, never rename. */
export const migrations: Record<string, Migration> = {
  '0001-initial': m0001,
  '0002-audit-log': m0002,
  '0003-auth-throttle': m0003,
  '0004-mfa': m0004,
  '0005-tenant-settings': m0005,
  '0006-session-authenticated-at': m0006,
  '0007-field-encryption': m0007,
  '0008-passkeys': m0008,
  '0009-password-reset': m0009,
  '0010-mfa-enforcement': m0010,
  '0011-audit-outbox': m0011,
  '0012-audit-retention': m0012,
  '0013-alerts': m0013,
  '0014-permissions': m0014,
  '0015-break-glass': m0015,
  '0016-tenant-walls': m0016,
  '0017-key-reencryption': m0017,
  '0018-audit-nodes-clustered': m0018,
  '0019-user-encryption': m0019,
  '0020-phone-region': m0020,
  '0021-audit-derived-columns': m0021,
};
