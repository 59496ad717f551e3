import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { localTime, RULE_EVENT_TYPES, withinBusinessHours } from './rules.ts';

const office = {
  timeZone: 'America/New_York',
  start: '09:00',
  end: '17:30',
  days: [1, 2, 3, 4, 5],
};

describe('business hours', () => {
  it('reads the local weekday and time, daylight saving included', () => {
    // 2026-07-01 is a Wednesday; New York is UTC-4 in summer, UTC-5 in winter.
    expect(localTime(new Date('2026-07-01T13:00:00Z'), office.timeZone)).toEqual({
      day: 3,
      minute: 540,
    });
    expect(localTime(new Date('2026-01-07T14:00:00Z'), office.timeZone)).toEqual({
      day: 3,
      minute: 540,
    });
  });

  it('includes the start minute and excludes the end minute', () => {
    expect(withinBusinessHours(new Date('2026-07-01T13:00:00Z'), office)).toBe(true);
    expect(withinBusinessHours(new Date('2026-07-01T12:59:00Z'), office)).toBe(false);
    expect(withinBusinessHours(new Date('2026-07-01T21:29:00Z'), office)).toBe(true);
    expect(withinBusinessHours(new Date('2026-07-01T21:30:00Z'), office)).toBe(false);
  });

  it('treats the weekend as outside', () => {
    expect(withinBusinessHours(new Date('2026-07-04T15:00:00Z'), office)).toBe(false);
  });

  it('handles a night shift across midnight as the previous day’s shift', () => {
    const night = { timeZone: 'UTC', start: '22:00', end: '06:00', days: [5] };
    expect(withinBusinessHours(new Date('2026-07-03T23:00:00Z'), night)).toBe(true); // Fri 23:00
    expect(withinBusinessHours(new Date('2026-07-04T05:59:00Z'), night)).toBe(true); // Sat 05:59
    expect(withinBusinessHours(new Date('2026-07-04T06:00:00Z'), night)).toBe(false);
    expect(withinBusinessHours(new Date('2026-07-02T23:00:00Z'), night)).toBe(false); // Thu
  });
});

describe('privilege escalation event names', () => {
  it('lists exactly the role-setting events Custos emits, each with a role_<role> reason', () => {
    const src = path.resolve(import.meta.dirname, '../..');
    const files = fs
      .readdirSync(src, { recursive: true, encoding: 'utf8' })
      .filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts'))
      .map((f) => fs.readFileSync(path.join(src, f), 'utf8'));
    for (const type of RULE_EVENT_TYPES.privilege) {
      // The append that emits it, with its role reason a few lines below.
      const emitted = files.some((text) =>
        new RegExp(`type: '${type.replace('.', '\\.')}',[\\s\\S]{0,300}?role_\\$\\{`).test(text),
      );
      expect(emitted, `${type} is emitted with reason role_<role>`).toBe(true);
    }
    expect([...RULE_EVENT_TYPES.privilege].sort()).toEqual([
      'api_key.created',
      'user.created',
      'user.updated',
    ]);
  });
});
