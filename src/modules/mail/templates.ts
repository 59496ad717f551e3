/**
 * Plain-text messages. They name only what the recipient already knows (their organisation in
 * Custos, the time) and never quote anything another person typed: no user agent, no address,
 * no name chosen by whoever signed in (which could carry a phishing text).
 */
export interface Rendered {
  subject: string;
  text: string;
}

const footer = (publicUrl: string) =>
  `\n\n-- \nCustos, ${publicUrl}\nThis is an automatic message about the security of your account; replies are not read.\n`;

const when = (at: string) => `${at.slice(0, 19).replace('T', ' ')} UTC`;

export function passwordResetMail(p: {
  tenantName: string;
  link: string;
  minutes: number;
  publicUrl: string;
}): Rendered {
  return {
    subject: 'Reset your Custos password',
    text:
      `Someone (hopefully you) asked to reset the password of your Custos account at ${p.tenantName}.\n\n` +
      `To choose a new password, open this link within ${p.minutes} minutes. It works once:\n\n` +
      `${p.link}\n\n` +
      'If two-factor authentication is on, you will also need a code from your authenticator app ' +
      'or a recovery code. Setting a new password signs you out everywhere.\n\n' +
      'If you did not ask for this, ignore this message: your password stays as it is.' +
      footer(p.publicUrl),
  };
}

export function emailConfirmationMail(p: {
  tenantName: string;
  link: string;
  minutes: number;
  publicUrl: string;
}): Rendered {
  return {
    subject: 'Confirm your new Custos e-mail address',
    text:
      `Someone asked to make this address the sign-in e-mail of a Custos account at ${p.tenantName}.\n\n` +
      `To confirm, open this link within ${p.minutes} minutes. It works once:\n\n` +
      `${p.link}\n\n` +
      'If you did not ask for this, ignore this message: nothing changes.' +
      footer(p.publicUrl),
  };
}

export function emailChangeNotice(p: {
  tenantName: string;
  at: string;
  publicUrl: string;
}): Rendered {
  return {
    subject: 'A change of your Custos e-mail address was requested',
    text:
      `At ${when(p.at)} a change of the sign-in e-mail of your Custos account at ${p.tenantName} ` +
      'was requested from a signed-in session. It takes effect once the new address is confirmed.\n\n' +
      'If it was not you, sign in now, change your password (this ends every other session) and ' +
      'tell your administrator.' +
      footer(p.publicUrl),
  };
}

export function newDeviceNotice(p: {
  tenantName: string;
  at: string;
  publicUrl: string;
}): Rendered {
  return {
    subject: 'New sign-in to your Custos account',
    text:
      `At ${when(p.at)} your Custos account at ${p.tenantName} was signed in to from a browser or ` +
      'device not used before.\n\n' +
      'If it was you, there is nothing to do. If not, sign in now, review your sessions, change ' +
      'your password (this ends every other session) and tell your administrator.' +
      footer(p.publicUrl),
  };
}

export function passwordChangedNotice(p: {
  tenantName: string;
  at: string;
  method: 'change' | 'reset';
  publicUrl: string;
}): Rendered {
  const how = p.method === 'reset' ? 'reset through an e-mailed link' : 'changed';
  return {
    subject: 'Your Custos password was changed',
    text:
      `At ${when(p.at)} the password of your Custos account at ${p.tenantName} was ${how}, and ` +
      'the other sessions were signed out.\n\n' +
      'If it was not you, reset your password now from the sign-in page and tell your administrator.' +
      footer(p.publicUrl),
  };
}

const methodNames: Record<string, string> = {
  totp: 'an authenticator app (TOTP)',
  passkey: 'a passkey',
  webauthn: 'a passkey',
};

export function mfaChangedNotice(p: {
  tenantName: string;
  at: string;
  change: 'enrolled' | 'removed';
  method: string;
  publicUrl: string;
}): Rendered {
  const method = methodNames[p.method] ?? 'a second factor';
  const what =
    p.change === 'enrolled'
      ? `${method} was added as a second factor to`
      : `${method} was removed from the second factors of`;
  return {
    subject:
      p.change === 'enrolled'
        ? 'A second factor was added to your Custos account'
        : 'A second factor was removed from your Custos account',
    text:
      `At ${when(p.at)} ${what} your Custos account at ${p.tenantName}.\n\n` +
      'If it was not you, sign in now, change your password and tell your administrator.' +
      footer(p.publicUrl),
  };
}

/** What each detection rule means, in the alert mail (ids are Custos's own, never user input). */
const ruleTexts: Record<string, string> = {
  brute_force: 'many failed sign-ins on one account',
  password_spraying: 'failed sign-ins from one address across accounts',
  bulk_read: 'many reads or exports of personal records by one user or API key',
  off_hours: 'a sign-in outside business hours',
  new_device: 'a sign-in from a new device or address',
  privilege_escalation: 'a user or API key given an administrator role',
  break_glass: 'emergency (break-glass) access',
  audit_verification_failed: 'the audit log failed verification',
  key_rotation_overdue: 'the data encryption key is older than the rotation period',
};

/**
 * A new security alert, to the tenant's owners and admins or its configured addresses. Names
 * the rule, severity, time and alert id only: no subject, address or detail a person chose.
 */
export function securityAlertMail(p: {
  tenantName: string;
  alert: { id: string; rule: string; severity: string; firstSeenAt: string };
  publicUrl: string;
}): Rendered {
  const what = ruleTexts[p.alert.rule] ?? 'a detection rule matched';
  return {
    subject: `Custos security alert (${p.alert.severity}): ${p.alert.rule}`,
    text:
      `At ${when(p.alert.firstSeenAt)} Custos raised a ${p.alert.severity} security alert for ` +
      `${p.tenantName}: ${what} (rule ${p.alert.rule}).\n\n` +
      `Alert id: ${p.alert.id}\n\n` +
      'Review it with GET /api/v1/alerts (owners and administrators), then acknowledge or resolve ' +
      'it. Further findings of the same incident are counted on this alert without another mail.' +
      footer(p.publicUrl),
  };
}
