import { describe, expect, it } from 'vitest';
import { AppError } from '../../errors.ts';
import { mapRow, resolveMapping, targetOfHeader } from './csv-mapping.ts';
import { neutralizeCell, restoreCell } from './csv-escape.ts';

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (error) {
    return error instanceof AppError ? error.code : 'not an AppError';
  }
  return undefined;
}

describe('header recognition', () => {
  it.each([
    ['first_name', 'firstName'],
    ['First Name', 'firstName'],
    ['firstName', 'firstName'],
    ['Given name', 'firstName'],
    ['LAST-NAME', 'lastName'],
    ['E-mail', 'email'],
    ['email_work', 'email'],
    ['Email Address', 'email'],
    ['Home Email', 'email'],
    ['phone_number', 'phone'],
    ['phone_home', 'phone'],
    ['Mobile Phone', 'phone'],
    ['Job Title', 'title'],
    ['company_name', 'company'],
    ['Date of Birth', 'dateOfBirth'],
    ['ZIP', 'postalCode'],
    ['background', 'notes'],
  ])('reads %s as %s', (header, target) => {
    expect(targetOfHeader(header)).toBe(target);
  });

  it.each(['email_opt_in', 'has_newsletter', 'company_id', 'id', 'linkedin_url', ''])(
    'does not guess a field for %j',
    (header) => {
      expect(targetOfHeader(header)).toBeUndefined();
    },
  );
});

describe('resolveMapping and mapRow', () => {
  const headers = ['id', 'first_name', 'email_work', 'email_home', 'phone_work', 'company', 'city'];

  it('takes the first non-empty e-mail and phone, left to right, and lists ignored columns', () => {
    const m = resolveMapping(headers);
    expect(m.ignoredColumns).toEqual(['id']);
    const row = mapRow(m, [
      '7',
      ' Ada ',
      '',
      'ada@home.example',
      '+44 20 7946 0958',
      'ACME',
      'Leeds',
    ]);
    expect(row.values).toEqual({
      firstName: 'Ada',
      email: 'ada@home.example',
      phone: '+44 20 7946 0958',
      address: 'Leeds',
    });
    expect(row.company).toBe('ACME');
    expect(row.columnOf.email).toBe('email_home');
  });

  it('lets an explicit mapping win, and null ignore a column', () => {
    const m = resolveMapping(headers, { id: 'nationalId', email_work: null, Phone_Work: 'notes' });
    const row = mapRow(m, ['X1', 'Ada', 'w@x.example', 'h@x.example', 'call me', '', '']);
    expect(row.values).toMatchObject({ nationalId: 'X1', email: 'h@x.example', notes: 'call me' });
    expect(row.values.phone).toBeUndefined();
    expect(m.ignoredColumns).toEqual(['email_work']);
  });

  it('splits a full name only when first and last name are absent', () => {
    const m = resolveMapping(['Name', 'Email']);
    expect(mapRow(m, ['Grace Brewster Hopper', '']).values).toEqual({
      firstName: 'Grace',
      lastName: 'Brewster Hopper',
    });
  });

  it('refuses a header with no contact column, and mappings naming unknown targets or columns', () => {
    expect(codeOf(() => resolveMapping(['foo', 'bar']))).toBe('import.invalid_header');
    expect(codeOf(() => resolveMapping(headers, { id: 'tenantId' }))).toBe(
      'import.invalid_mapping',
    );
    expect(codeOf(() => resolveMapping(headers, { nope: 'email' }))).toBe('import.invalid_mapping');
  });

  it('undoes the export escape of formula-looking cells', () => {
    const m = resolveMapping(['phone', 'notes']);
    expect(mapRow(m, ["'+1 415 555 2671", "'=SUM(A1)"]).values).toEqual({
      phone: '+1 415 555 2671',
      notes: '=SUM(A1)',
    });
  });
});

describe('formula neutralisation', () => {
  it.each(['=1+1', '+1', '-2', '@SUM(A1)', '\tx', '\rx', '  =cmd', "'=x", "''+y"])(
    'prefixes %j and restores it exactly',
    (value) => {
      const safe = neutralizeCell(value);
      expect(safe).toBe(`'${value}`);
      expect(restoreCell(safe)).toBe(value);
    },
  );

  it.each(['Ada', "O'Brien", "'quoted'", 'a=b', '', ' plain'])('leaves %j as it is', (value) => {
    expect(neutralizeCell(value)).toBe(value);
    expect(restoreCell(value)).toBe(value);
  });
});
