import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEventInput } from '../../src/modules/audit/event.ts';
import { expectCode } from '../helpers/problem.ts';
import type { Session } from '../helpers/context.ts';
import { createMailTestContext, type MailTestContext } from '../helpers/smtp.ts';

let ctx: MailTestContext;

beforeAll(async () => {
  ctx = await createMailTestContext();
});
afterAll(async () => ctx?.close());

const DAY = 24 * 3_600_000;
const run = () => ctx.services.detectionWorker.runOnce();

async function append(event: AuditEventInput) {
  await ctx.database.handle.db
    .transaction()
    .execute((trx) => ctx.services.auditLog.append(trx, event));
}

const breakGlass = (s: Session) =>
  append({
    tenantId: s.tenantId,
    type: 'auth.break_glass.opened',
    actor: { kind: 'user', id: s.userId },
  });

const patchSettings = (s: Session, payload: object) =>
  ctx.app.inject({
    method: 'PATCH',
    url: '/api/v1/detection/settings',
    headers: s.headers,
    payload,
  });

async function alerts(s: Session, rule: string) {
  // A fresh session: the tests move the clock by days.
  s = await ctx.login(s.tenant, s.email);
  const res = await ctx.app.inject({ url: `/api/v1/alerts?rule=${rule}`, headers: s.headers });
  expect(res.statusCode, res.body).toBe(200);
  return res.json<{ items: { id: string; details: Record<string, unknown> }[] }>().items;
}

/** Mails about alerts received by `address` once the mailer's queue drained. */
const alertMails = (address: string) => ctx.mailsTo(address, /^Custos security alert/);

describe('alert e-mail', () => {
  it('mails a new alert to the active owners and admins, once, and not to agents', async () => {
    const owner = await ctx.tenant();
    const admin = await ctx.user(owner, 'admin');
    const member = await ctx.user(owner, 'agent');
    await run();
    // Creating the admin was itself a privilege grant: start from what that mailed.
    const before = (await alertMails(owner.email)).length;
    await breakGlass(admin);
    await run();
    const [alert] = await alerts(owner, 'break_glass');
    for (const who of [owner, admin]) {
      const mails = await alertMails(who.email);
      expect(mails).toHaveLength(before + 1);
      const mail = mails.at(-1)!;
      expect(mail.subject).toBe('Custos security alert (critical): break_glass');
      expect(mail.text).toContain(`Alert id: ${alert!.id}`);
      expect(mail.text).toContain(`Tenant ${owner.tenant}`);
      expect(mail.to).toEqual([who.email]);
    }
    expect(await alertMails(member.email)).toHaveLength(0);
  });

  it('mails the addresses in the detection settings instead, audited by field name only', async () => {
    const owner = await ctx.tenant();
    await run();
    const soc = `soc-${owner.tenant}@example.net`;
    const res = await patchSettings(owner, {
      alertRecipients: { ownersAndAdmins: false, emails: [soc] },
    });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toMatchObject({
      alertRecipients: { ownersAndAdmins: false, emails: [soc] },
    });
    await breakGlass(owner);
    await run();
    expect(await alertMails(soc)).toHaveLength(1);
    expect(await alertMails(owner.email)).toHaveLength(0);
    const events = await ctx.app.inject({
      url: '/api/v1/audit/events?type=detection.settings.changed',
      headers: owner.headers,
    });
    const changed = events.json<{ items: { fields: string[] }[] }>().items;
    expect(changed.map((e) => e.fields)).toEqual([
      ['alertRecipients.emails', 'alertRecipients.ownersAndAdmins'],
    ]);
    expect(events.body).not.toContain(soc);
    // Not an address, too many, or unknown keys: refused with the validation code.
    for (const bad of [
      { alertRecipients: { emails: ['not an address'] } },
      { alertRecipients: { emails: Array.from({ length: 11 }, (_, i) => `a${i}@example.net`) } },
      { alertRecipients: { cc: ['x@example.net'] } },
    ]) {
      expectCode(await patchSettings(owner, bad), 400, 'request.invalid');
    }
  });
});

describe('key rotation overdue', () => {
  it('raises when the active data key is older than the tenant threshold, once per version', async () => {
    const owner = await ctx.tenant();
    // The tenant's data key (version 1) is created with its first encrypted value.
    const made = await ctx.app.inject({
      method: 'POST',
      url: '/api/v1/contacts',
      headers: owner.headers,
      payload: { firstName: 'Key', lastName: 'Holder', email: 'holder@example.com' },
    });
    expect(made.statusCode, made.body).toBe(201);
    const third = await ctx.tenant();
    const thirdContact = await ctx.app.inject({
      method: 'POST',
      url: '/api/v1/contacts',
      headers: third.headers,
      payload: { firstName: 'Third', lastName: 'Holder' },
    });
    expect(thirdContact.statusCode).toBe(201);
    expect(
      (await patchSettings(third, { rules: { key_rotation_overdue: { enabled: false } } }))
        .statusCode,
    ).toBe(200);
    const other = await ctx.tenant();
    const otherContact = await ctx.app.inject({
      method: 'POST',
      url: '/api/v1/contacts',
      headers: other.headers,
      payload: { firstName: 'Other', lastName: 'Holder' },
    });
    expect(otherContact.statusCode).toBe(201);
    expect(
      (await patchSettings(other, { rules: { key_rotation_overdue: { maxAgeDays: 30 } } }))
        .statusCode,
    ).toBe(200);
    await run();

    ctx.clock.advance(29 * DAY);
    await run();
    expect(await alerts(other, 'key_rotation_overdue')).toHaveLength(0);

    // Past 30 days: the tenant with the 30-day period, not the one with the default 365.
    ctx.clock.advance(2 * DAY);
    await run();
    const [overdue, ...more] = await alerts(other, 'key_rotation_overdue');
    expect(more).toHaveLength(0);
    expect(overdue).toMatchObject({
      details: { keyVersion: 1, ageDays: 31, maxAgeDays: 30 },
    });
    expect(await alerts(owner, 'key_rotation_overdue')).toHaveLength(0);
    expect(await alertMails(other.email)).toEqual([
      expect.objectContaining({
        subject: 'Custos security alert (medium): key_rotation_overdue',
      }),
    ]);

    // Checked again an hour later: the same version raises nothing new.
    ctx.clock.advance(3_600_000);
    await run();
    expect(await alerts(other, 'key_rotation_overdue')).toHaveLength(1);

    // The default 365 days, and a tenant that turned the rule off.
    ctx.clock.advance(335 * DAY);
    await run();
    expect(await alerts(owner, 'key_rotation_overdue')).toEqual([
      expect.objectContaining({ details: { keyVersion: 1, ageDays: 366, maxAgeDays: 365 } }),
    ]);
    expect(await alerts(third, 'key_rotation_overdue')).toEqual([]);
  });
});
