import { describe, expect, it } from 'vitest';
import { AppError } from '../../errors.ts';
import {
  assertPasswordAcceptable,
  checkPassword,
  type PasswordContext,
} from './password-policy.ts';

const acme: PasswordContext = {
  email: 'jane.doe@zentrix.example',
  name: 'Jane Doe',
  tenantSlug: 'zentrix',
  tenantName: 'Zentrix Corporation',
};

const problemsOf = async (password: string, context: PasswordContext = acme) =>
  (await checkPassword(password, context)).map((p) => p.problem);

describe('password policy', () => {
  it('accepts a long random passphrase', async () => {
    expect(await checkPassword('maple trombone quietly vanishes 47 ways', acme)).toEqual([]);
    expect(await checkPassword('zq8#Lr!vW2p$Yx0mTe', acme)).toEqual([]);
  });

  it('counts code points after NFC, so any script and emoji count as typed', async () => {
    // 15 characters, each two UTF-16 units.
    expect(await problemsOf('🦊🐢🐙🦉🐝🦋🐞🦀🐬🦓🐘🦒🦔🐧🦩')).toEqual([]);
    expect(await problemsOf('🦊🐢🐙🦉🐝🦋🐞')).toEqual(['too_short']);
    // "é" typed decomposed (two code points) is one character once normalized: 14 in all.
    expect(await problemsOf('e\u0301'.repeat(10) + 'wxyz')).toEqual(['too_short']);
    expect(await problemsOf('e\u0301'.repeat(10) + 'vwxyz')).toEqual([]);
    expect(await problemsOf('日本語のパスワードはとても長いです')).toEqual([]);
  });

  it('needs 15 characters by default, fewer only when the caller says so', async () => {
    expect(await problemsOf('quiet tiger 7x')).toEqual(['too_short']);
    expect(await checkPassword('quiet tiger 7x', {}, { minLength: 8 })).toEqual([]);
    expect(await problemsOf('river cobalt 9q')).toEqual([]);
  });

  it('accepts 1024 characters and refuses 1025', async () => {
    const long = Array.from({ length: 1024 }, (_, i) => 'abcdefghij'[(i * 7) % 10]).join('');
    expect(await problemsOf(long, {})).not.toContain('too_long');
    expect(await problemsOf(`${long}k`, {})).toEqual(['too_long']);
  });

  it('imposes no composition rules', async () => {
    expect(await problemsOf('all lower case words here')).toEqual([]);
    expect(await problemsOf('ALLUPPERCASEWITHNOSPACE')).toEqual([]);
  });

  it('refuses entries of the common-password list, in any case, repeated or with digits added', async () => {
    for (const password of [
      '1qaz2wsx3edc4rfv',
      'passwordpassword',
      'QWERTYUIOP123456',
      'iloveyou!!!!!!!!2026',
      'monkeymonkeymonkey',
      'aaaaaaaaaaaaaaaaaaaa',
    ]) {
      expect(await problemsOf(password, {}), password).toEqual(['common']);
    }
  });

  it('refuses passwords built from the tenant, the e-mail or the name, each with its own reason', async () => {
    expect(await problemsOf('zentrixzentrix2026')).toEqual(['from_tenant']);
    expect(await problemsOf('ZENTRIX Corporation 2026!')).toEqual(['from_tenant']);
    expect(await problemsOf('acmeacmeacme2026', { tenantSlug: 'acme' })).toContain('from_tenant');
    expect(await problemsOf('jane.doe@zentrix.example')).toContain('from_email');
    expect(await problemsOf('jane.doe@zentrix.examplejane.doe@zentrix.example')).toContain(
      'from_email',
    );
    expect(await problemsOf('janedoejanedoe!!')).toEqual(['from_email', 'from_name']);
    expect(await problemsOf('Jane Doe 19851231')).toContain('from_name');
    expect(await problemsOf('Jane Doe 19851231', { name: 'Jane Doe' })).toEqual(['from_name']);
    const reasons = (await checkPassword('zentrixzentrix2026', acme)).map((p) => p.reason);
    expect(reasons[0]).toMatch(/organisation/);
  });

  it('accepts a passphrase that merely contains a name among its own words', async () => {
    expect(await problemsOf('jane walks the long road to ipswich')).toEqual([]);
  });

  it('throws auth.password_rejected with every reason and never the password', async () => {
    const error = await assertPasswordAcceptable('zentrixzentrix2026', acme).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(AppError);
    const appError = error as AppError;
    expect(appError.code).toBe('auth.password_rejected');
    expect(appError.kind).toBe('invalid');
    expect(appError.errors).toEqual([
      {
        field: 'body/password',
        reason: "must not be built from the organisation's name or sign-in identifier",
      },
    ]);
    expect(JSON.stringify(appError.errors) + appError.detail).not.toContain('zentrixzentrix2026');
  });
});
